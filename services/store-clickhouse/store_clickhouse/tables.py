"""The ClickHouse tables this service writes, and how a topic value becomes a row.

Every table is a ReplacingMergeTree whose sorting key is the record's natural key, so a
message delivered twice (at-least-once) or a tape replayed twice collapses to one row
when parts merge; reads that must not see duplicates use `FINAL` (see queries.py).
Times are DateTime64(3, 'UTC'): the topics carry milliseconds, nothing is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from syi_shared.models import IndexValue, OrderBook, PriceTick
from syi_shared.timefmt import parse_utc
from syi_shared.topics import CC_ORDERBOOK, CC_PRICES, SYI_CALCULATED

Row = list[Any]


@dataclass(frozen=True)
class Table:
    name: str
    topic: str
    columns: tuple[str, ...]
    ddl: str
    row: Callable[[Any], Row]


def _time(text: str | None) -> datetime | None:
    return parse_utc(text) if text is not None else None


def _price_row(tick: PriceTick) -> Row:
    return [
        tick.symbol, tick.venue, _time(tick.event_time), tick.pair, tick.base, tick.quote,
        tick.bid, tick.ask, tick.price, _time(tick.ingest_time),
    ]


def _book_row(book: OrderBook) -> Row:
    return [
        book.symbol, book.venue, _time(book.event_time), book.pair, book.base, book.quote,
        [price for price, _ in book.bids], [qty for _, qty in book.bids],
        [price for price, _ in book.asks], [qty for _, qty in book.asks],
        _time(book.ingest_time),
    ]


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
    columns=("symbol", "venue", "event_time", "pair", "base", "quote", "bid", "ask", "price", "ingest_time"),
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
    ingest_time DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(ingest_time)
PARTITION BY toYYYYMM(event_time)
ORDER BY (symbol, venue, event_time)
""",
    row=_price_row,
)

ORDERBOOK = Table(
    name="orderbook",
    topic=CC_ORDERBOOK,
    columns=(
        "symbol", "venue", "event_time", "pair", "base", "quote",
        "bid_prices", "bid_qtys", "ask_prices", "ask_qtys", "ingest_time",
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
    bids Array(Tuple(price Float64, qty Float64)) ALIAS arrayZip(bid_prices, bid_qtys),
    asks Array(Tuple(price Float64, qty Float64)) ALIAS arrayZip(ask_prices, ask_qtys)
) ENGINE = ReplacingMergeTree(ingest_time)
PARTITION BY toYYYYMM(event_time)
ORDER BY (symbol, venue, event_time)
""",
    row=_book_row,
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
)

TABLES: tuple[Table, ...] = (PRICES, ORDERBOOK, INDEX_VALUES)
TABLE_FOR_TOPIC: dict[str, Table] = {table.topic: table for table in TABLES}
