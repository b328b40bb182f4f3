"""The ClickHouse tables this service writes, and how a topic value becomes a row.

Every table is a ReplacingMergeTree whose sorting key is the record's natural key, so a
message delivered twice (at-least-once) or a tape replayed twice collapses to one row
when parts merge; reads that must not see duplicates use `FINAL` (see queries.py).
Times are DateTime64(3, 'UTC'): the topics carry milliseconds, nothing is lost.

The raw inputs (every topic a tape holds) go both ways: `row(model)` stores a message and
`model(row)` gives it back, so that `serde.dumps` of it is the bytes that were published. What
the typed columns cannot hold (fields a producer added beyond docs/topics.md, a time not written
with exactly milliseconds) goes verbatim into the `extra` column, a JSON object ('' when none).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
from pydantic import BaseModel

from syi_shared.models import IndexValue, MarketCap, OrderBook, PoolYield, PriceTick, TBill
from syi_shared.timefmt import format_utc, millis, parse_utc, time_text
from syi_shared.topics import CC_ORDERBOOK, CC_PRICES, DL_APY, EX_MKTCAP, SYI_CALCULATED, TRAD_TBILL

Row = list[Any]
StoredRow = Mapping[str, Any]  # a row read back, by column name


@dataclass(frozen=True)
class Table:
    name: str
    topic: str
    columns: tuple[str, ...]
    ddl: str
    row: Callable[[Any], Row]
    # the sorting key (the record's natural key): copies collapse on it, the archive orders ties by it
    natural_key: tuple[str, ...] = ()
    event_column: str = "event_time"  # the time a tape orders and filters by
    time_columns: tuple[str, ...] = ("event_time", "ingest_time")  # DateTime64(3, 'UTC') columns
    # stored row -> the topic's model, re-serialising as published (None: not an input, not rebuilt)
    model: Callable[[StoredRow], BaseModel] | None = None


def _time(text: str | None) -> datetime | None:
    return parse_utc(text) if text is not None else None


def _text(stored: datetime | int | None) -> str | None:
    """A stored time back as a topic writes it: epoch milliseconds or a datetime (naive: UTC,
    as clickhouse-connect returns a DateTime64 column on some clients)."""
    if stored is None:
        return None
    if isinstance(stored, int):
        return time_text(stored)
    return format_utc(stored if stored.tzinfo is not None else stored.replace(tzinfo=UTC))


_INPUT_TIMES = ("event_time", "ingest_time")


def _extra(value: BaseModel) -> str:
    """What the typed columns cannot give back, as a JSON object ('' when nothing): a time not in
    the millisecond form (`...:01Z`, `.5Z`, microseconds), and fields beyond docs/topics.md."""
    kept: dict[str, Any] = {}
    for name in _INPUT_TIMES:
        text = getattr(value, name)
        if time_text(millis(text)) != text:
            kept[name] = text
    kept.update(value.model_extra or {})
    return orjson.dumps(kept).decode() if kept else ""


def _rebuilt(model: type[BaseModel], row: StoredRow, fields: dict[str, Any]) -> BaseModel:
    fields["event_time"], fields["ingest_time"] = _text(row["event_time"]), _text(row["ingest_time"])
    if row.get("extra"):
        # A verbatim time replaces its column's (its key keeps its place); extra fields come last,
        # in their published order, as the model serialises them.
        fields.update(orjson.loads(row["extra"]))
    return model.model_validate(fields)


def _price_row(tick: PriceTick) -> Row:
    return [
        tick.symbol, tick.venue, _time(tick.event_time), tick.pair, tick.base, tick.quote,
        tick.bid, tick.ask, tick.price, _time(tick.ingest_time), _extra(tick),
    ]


def _price_model(row: StoredRow) -> BaseModel:
    return _rebuilt(PriceTick, row, {
        "symbol": row["symbol"], "venue": row["venue"], "pair": row["pair"], "base": row["base"],
        "quote": row["quote"], "bid": row["bid"], "ask": row["ask"], "price": row["price"],
    })


def _book_row(book: OrderBook) -> Row:
    return [
        book.symbol, book.venue, _time(book.event_time), book.pair, book.base, book.quote,
        [price for price, _ in book.bids], [qty for _, qty in book.bids],
        [price for price, _ in book.asks], [qty for _, qty in book.asks],
        _time(book.ingest_time), _extra(book),
    ]


def _book_model(row: StoredRow) -> BaseModel:
    return _rebuilt(OrderBook, row, {
        "symbol": row["symbol"], "venue": row["venue"], "pair": row["pair"], "base": row["base"],
        "quote": row["quote"],
        "bids": [[price, qty] for price, qty in zip(row["bid_prices"], row["bid_qtys"], strict=True)],
        "asks": [[price, qty] for price, qty in zip(row["ask_prices"], row["ask_qtys"], strict=True)],
    })


def _pool_row(pool: PoolYield) -> Row:
    return [
        pool.pool, _time(pool.event_time), pool.project, pool.chain, pool.symbol, pool.tvl_usd,
        pool.apy_base_pct, pool.apy_reward_pct, pool.apy_pct, pool.stablecoin, pool.exposure,
        _time(pool.ingest_time), _extra(pool),
    ]


def _pool_model(row: StoredRow) -> BaseModel:
    return _rebuilt(PoolYield, row, {
        "pool": row["pool"], "project": row["project"], "chain": row["chain"], "symbol": row["symbol"],
        "tvl_usd": row["tvl_usd"], "apy_base_pct": row["apy_base_pct"], "apy_reward_pct": row["apy_reward_pct"],
        "apy_pct": row["apy_pct"], "stablecoin": bool(row["stablecoin"]), "exposure": row["exposure"],
    })


def _cap_row(cap: MarketCap) -> Row:
    return [
        cap.symbol, _time(cap.event_time), cap.market_cap_usd, cap.price_usd, cap.source,
        _time(cap.ingest_time), _extra(cap),
    ]


def _cap_model(row: StoredRow) -> BaseModel:
    return _rebuilt(MarketCap, row, {
        "symbol": row["symbol"], "market_cap_usd": row["market_cap_usd"], "price_usd": row["price_usd"],
        "source": row["source"],
    })


def _tbill_row(bill: TBill) -> Row:
    return [
        bill.series, _time(bill.event_time), date.fromisoformat(bill.observation_date), bill.rate_pct,
        bill.basis, bill.source, _time(bill.ingest_time), _extra(bill),
    ]


def _tbill_model(row: StoredRow) -> BaseModel:
    observed = row["observation_date"]
    return _rebuilt(TBill, row, {
        "series": row["series"],
        "observation_date": observed.isoformat() if isinstance(observed, date) else str(observed),
        "rate_pct": row["rate_pct"], "basis": row["basis"], "source": row["source"],
    })


def _index_row(value: IndexValue) -> Row:
    # Constituents keep their published JSON shape: analysts read them with JSONExtract*.
    constituents = orjson.dumps([c.model_dump(mode="json") for c in value.constituents]).decode()
    return [
        value.index_id, _time(value.bucket_end), value.syi_decimal, value.syi_percent,
        value.methodology_version, value.status, value.coverage, value.hhi,
        value.tbill_apy_decimal, value.risk_premium_decimal, constituents, list(value.flags),
        _time(value.inputs_max_event_time), _time(value.published_at), value.revision,
        value.supersedes_cid, value.input_cid, value.prev_cid, value.cid,
        getattr(value, "restatement_reason", None),  # why a revision >= 1 was published (docs/methodology.md §9)
    ]


PRICES = Table(
    name="prices",
    topic=CC_PRICES,
    columns=("symbol", "venue", "event_time", "pair", "base", "quote", "bid", "ask", "price", "ingest_time", "extra"),
    # version = ingest_time: when one (symbol, venue, event_time) was ingested twice with
    # different values, the later ingest wins; exact redeliveries are identical anyway.
    ddl="""
CREATE TABLE IF NOT EXISTS prices (
    symbol LowCardinality(String),
    venue LowCardinality(String),
    event_time DateTime64(3, 'UTC'),
    pair Nullable(String),
    base LowCardinality(String),
    quote LowCardinality(String),
    bid Nullable(Float64),
    ask Nullable(Float64),
    price Float64,
    ingest_time DateTime64(3, 'UTC'),
    extra String DEFAULT ''
) ENGINE = ReplacingMergeTree(ingest_time)
PARTITION BY toYYYYMM(event_time)
ORDER BY (symbol, venue, event_time)
""",
    row=_price_row,
    natural_key=("symbol", "venue", "event_time"),
    model=_price_model,
)

ORDERBOOK = Table(
    name="orderbook",
    topic=CC_ORDERBOOK,
    columns=(
        "symbol", "venue", "event_time", "pair", "base", "quote",
        "bid_prices", "bid_qtys", "ask_prices", "ask_qtys", "ingest_time", "extra",
    ),
    # Levels are stored as parallel arrays (best first): clickhouse-connect inserts them
    # >10x faster than Array(Tuple); the `bids`/`asks` ALIAS columns give the
    # [(price, qty), ...] view at read time for free.
    ddl="""
CREATE TABLE IF NOT EXISTS orderbook (
    symbol LowCardinality(String),
    venue LowCardinality(String),
    event_time DateTime64(3, 'UTC'),
    pair Nullable(String),
    base LowCardinality(String),
    quote LowCardinality(String),
    bid_prices Array(Float64),
    bid_qtys Array(Float64),
    ask_prices Array(Float64),
    ask_qtys Array(Float64),
    ingest_time DateTime64(3, 'UTC'),
    extra String DEFAULT '',
    bids Array(Tuple(price Float64, qty Float64)) ALIAS arrayZip(bid_prices, bid_qtys),
    asks Array(Tuple(price Float64, qty Float64)) ALIAS arrayZip(ask_prices, ask_qtys)
) ENGINE = ReplacingMergeTree(ingest_time)
PARTITION BY toYYYYMM(event_time)
ORDER BY (symbol, venue, event_time)
""",
    row=_book_row,
    natural_key=("symbol", "venue", "event_time"),
    model=_book_model,
)

POOL_YIELDS = Table(
    name="pool_yields",
    topic=DL_APY,
    columns=(
        "pool", "event_time", "project", "chain", "symbol", "tvl_usd", "apy_base_pct", "apy_reward_pct",
        "apy_pct", "stablecoin", "exposure", "ingest_time", "extra",
    ),
    # One row per observation (a pool polled again is a new row): a replay needs each as it came.
    ddl="""
CREATE TABLE IF NOT EXISTS pool_yields (
    pool String,
    event_time DateTime64(3, 'UTC'),
    project LowCardinality(String),
    chain LowCardinality(String),
    symbol LowCardinality(String),
    tvl_usd Float64,
    apy_base_pct Nullable(Float64),
    apy_reward_pct Nullable(Float64),
    apy_pct Nullable(Float64),
    stablecoin Bool,
    exposure LowCardinality(String),
    ingest_time DateTime64(3, 'UTC'),
    extra String DEFAULT ''
) ENGINE = ReplacingMergeTree(ingest_time)
PARTITION BY toYYYYMM(event_time)
ORDER BY (pool, event_time)
""",
    row=_pool_row,
    natural_key=("pool", "event_time"),
    model=_pool_model,
)

MARKET_CAPS = Table(
    name="market_caps",
    topic=EX_MKTCAP,
    columns=("symbol", "event_time", "market_cap_usd", "price_usd", "source", "ingest_time", "extra"),
    ddl="""
CREATE TABLE IF NOT EXISTS market_caps (
    symbol LowCardinality(String),
    event_time DateTime64(3, 'UTC'),
    market_cap_usd Float64,
    price_usd Nullable(Float64),
    source LowCardinality(String),
    ingest_time DateTime64(3, 'UTC'),
    extra String DEFAULT ''
) ENGINE = ReplacingMergeTree(ingest_time)
PARTITION BY toYYYYMM(event_time)
ORDER BY (symbol, event_time)
""",
    row=_cap_row,
    natural_key=("symbol", "event_time"),
    model=_cap_model,
)

TBILLS = Table(
    name="tbills",
    topic=TRAD_TBILL,
    columns=("series", "event_time", "observation_date", "rate_pct", "basis", "source", "ingest_time", "extra"),
    # Keyed by when the value became known, not only by its date: a replay must see each rate
    # when it was published (one poll can publish several dates at once, hence the date too).
    ddl="""
CREATE TABLE IF NOT EXISTS tbills (
    series LowCardinality(String),
    event_time DateTime64(3, 'UTC'),
    observation_date Date32,
    rate_pct Float64,
    basis LowCardinality(String),
    source LowCardinality(String),
    ingest_time DateTime64(3, 'UTC'),
    extra String DEFAULT ''
) ENGINE = ReplacingMergeTree(ingest_time)
PARTITION BY toYYYYMM(event_time)
ORDER BY (series, event_time, observation_date)
""",
    row=_tbill_row,
    natural_key=("series", "event_time", "observation_date"),
    model=_tbill_model,
)

INDEX_VALUES = Table(
    name="index_values",
    topic=SYI_CALCULATED,
    columns=(
        "index_id", "bucket_end", "syi_decimal", "syi_percent", "methodology_version", "status",
        "coverage", "hhi", "tbill_apy_decimal", "risk_premium_decimal", "constituents", "flags",
        "inputs_max_event_time", "published_at", "revision", "supersedes_cid", "input_cid",
        "prev_cid", "cid", "restatement_reason",
    ),
    # Every revision is kept (a restatement is a new row, never a replacement: docs/clickhouse.md);
    # only copies of one (index_id, bucket_end, revision) collapse, and those are identical.
    ddl="""
CREATE TABLE IF NOT EXISTS index_values (
    index_id LowCardinality(String),
    bucket_end DateTime64(3, 'UTC'),
    syi_decimal Float64,
    syi_percent Float64,
    methodology_version LowCardinality(String),
    status LowCardinality(String),
    coverage Float64,
    hhi Float64,
    tbill_apy_decimal Nullable(Float64),
    risk_premium_decimal Nullable(Float64),
    constituents String,
    flags Array(String),
    inputs_max_event_time Nullable(DateTime64(3, 'UTC')),
    published_at DateTime64(3, 'UTC'),
    revision UInt32,
    supersedes_cid Nullable(String),
    input_cid String,
    prev_cid Nullable(String),
    cid String,
    restatement_reason Nullable(String)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(bucket_end)
ORDER BY (index_id, bucket_end, revision)
""",
    row=_index_row,
    natural_key=("index_id", "bucket_end", "revision"),
    event_column="bucket_end",
    time_columns=("bucket_end", "inputs_max_event_time", "published_at"),
)

# The raw inputs, in the order a rebuilt tape puts messages of one event time (docs/clickhouse.md).
INPUT_TABLES: tuple[Table, ...] = (PRICES, ORDERBOOK, POOL_YIELDS, MARKET_CAPS, TBILLS)
TABLES: tuple[Table, ...] = (*INPUT_TABLES, INDEX_VALUES)
TABLE_FOR_TOPIC: dict[str, Table] = {table.topic: table for table in TABLES}
