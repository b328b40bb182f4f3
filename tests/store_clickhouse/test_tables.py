"""The tables against real chDB: schema, dedup of repeated writes, exact round trips."""

from __future__ import annotations

from datetime import UTC

import orjson

from store_clickhouse.clickhouse_store import ClickHouseStore
from store_clickhouse.tables import INDEX_VALUES, INPUT_TABLES, ORDERBOOK, PRICES, TABLE_FOR_TOPIC, TABLES, TBILLS
from syi_shared.codec import validate_value
from syi_shared.models import IndexValue, OrderBook, PriceTick
from syi_shared.serde import dumps
from syi_shared.timefmt import format_utc
from tests.shared.examples import APY, MKTCAP, PRICE, SYI, TBILL
from tests.shared.examples import ORDERBOOK as BOOK_EXAMPLE
from tests.store_clickhouse.records import book, index_value, tick


def final_rows(store: ClickHouseStore, table: str, order: str) -> list[dict]:
    return store.query(f"SELECT * FROM {table} FINAL ORDER BY {order}")


def test_schema_is_created_idempotently_with_engine_partitions_and_order(store, database):
    store.ensure_schema()  # second time: nothing changes, nothing fails
    tables = {
        row["name"]: row
        for row in store.query(
            "SELECT name, engine, partition_key, sorting_key FROM system.tables WHERE database = {db:String}",
            {"db": database},
        )
    }
    assert set(tables) == {t.name for t in TABLES}
    assert {row["engine"] for row in tables.values()} == {"ReplacingMergeTree"}
    assert tables["prices"]["partition_key"] == "toYYYYMM(event_time)"
    assert tables["prices"]["sorting_key"] == "symbol, venue, event_time"
    assert tables["orderbook"]["sorting_key"] == "symbol, venue, event_time"
    assert tables["index_values"]["partition_key"] == "toYYYYMM(bucket_end)"
    assert tables["index_values"]["sorting_key"] == "index_id, bucket_end, revision"
    for table in TABLES:  # the key the archive orders ties by is the one the table collapses on
        assert tables[table.name]["sorting_key"] == ", ".join(table.natural_key), table.name
    assert tables["pool_yields"]["partition_key"] == "toYYYYMM(event_time)"
    assert tables["tbills"]["sorting_key"] == "series, event_time, observation_date"
    types = {
        row["name"]: row["type"]
        for row in store.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'orderbook'",
            {"db": database},
        )
    }
    assert types["event_time"] == "DateTime64(3, 'UTC')"
    assert types["bid_prices"] == "Array(Float64)"
    assert types["bids"] == "Array(Tuple(price Float64, qty Float64))"  # the ALIAS view of the levels


def test_same_records_written_twice_are_stored_once(store):
    ticks = [tick("binance", i * 100, 1.0 + i / 1e5) for i in range(50)]
    books = [book("binance", i * 1000, [(0.9999, 10.0)], [(1.0001, 20.0)]) for i in range(5)]
    values = [index_value("SYI", m, 4.0 + m / 100) for m in range(3)]
    store.client.command("SYSTEM STOP MERGES prices")  # keep both copies visible until we merge
    for _ in range(2):  # an at-least-once redelivery writes every batch again
        store.insert(PRICES, [PRICES.row(t) for t in ticks])
        store.insert(ORDERBOOK, [ORDERBOOK.row(b) for b in books])
        store.insert(INDEX_VALUES, [INDEX_VALUES.row(v) for v in values])

    assert store.query("SELECT count() AS n FROM prices")[0]["n"] == 100  # both copies, until a merge
    assert store.query("SELECT count() AS n FROM prices FINAL")[0]["n"] == 50
    assert store.query("SELECT count() AS n FROM orderbook FINAL")[0]["n"] == 5
    assert store.query("SELECT count() AS n FROM index_values FINAL")[0]["n"] == 3
    store.client.command("SYSTEM START MERGES prices")
    store.client.command("OPTIMIZE TABLE prices FINAL")  # a merge collapses them for good
    assert store.query("SELECT count() AS n FROM prices")[0]["n"] == 50


def test_price_values_and_times_round_trip_exactly(store):
    awkward = [0.1 + 0.2, 1 / 3, 5e-324, 123456.78901234567, 0.99985]  # prices are at most 1e6
    ticks = [tick("kraken", 1 + i * 7, price) for i, price in enumerate(awkward)]
    ticks.append(PriceTick.model_validate(PRICE))  # no bid/ask edge: the docs/topics.md example
    no_quote = PriceTick.model_validate({**PRICE, "venue": "nobidask", "bid": None, "ask": None, "pair": None})
    store.insert(PRICES, [PRICES.row(t) for t in [*ticks, no_quote]])

    rows = final_rows(store, "prices", "venue, event_time")
    stored = {(r["venue"], format_utc(r["event_time"].replace(tzinfo=UTC))): r for r in rows}
    for original in [*ticks, no_quote]:
        row = stored[(original.venue, original.event_time)]
        assert row["price"] == original.price  # bit-exact Float64
        assert row["bid"] == original.bid and row["ask"] == original.ask
        assert row["pair"] == original.pair
        assert format_utc(row["ingest_time"].replace(tzinfo=UTC)) == original.ingest_time
        assert (row["symbol"], row["base"], row["quote"]) == (original.symbol, original.base, original.quote)


def test_book_levels_round_trip_exactly(store):
    original = OrderBook.model_validate(BOOK_EXAMPLE)
    empty_side = book("thin", 5, [(0.99, 1.5)], [])
    store.insert(ORDERBOOK, [ORDERBOOK.row(original), ORDERBOOK.row(empty_side)])
    rows = {r["venue"]: r for r in store.query("SELECT *, bids, asks FROM orderbook FINAL")}
    got = rows["binance"]
    assert [(level["price"], level["qty"]) for level in got["bids"]] == [tuple(x) for x in original.bids]
    assert [(level["price"], level["qty"]) for level in got["asks"]] == [tuple(x) for x in original.asks]
    assert format_utc(got["event_time"].replace(tzinfo=UTC)) == "2026-11-27T10:00:01.200Z"
    assert got["bid_prices"] == [0.9998, 0.9997] and got["ask_qtys"] == [9876543.0, 12000000.0]
    assert rows["thin"]["asks"] == [] and rows["thin"]["bids"] == [{"price": 0.99, "qty": 1.5}]


def test_index_value_round_trips_with_constituents_json(store):
    original = IndexValue.model_validate(SYI)
    store.insert(INDEX_VALUES, [INDEX_VALUES.row(original)])
    (row,) = store.query("SELECT * FROM index_values FINAL")
    for name in ("index_id", "syi_decimal", "syi_percent", "methodology_version", "status", "coverage",
                 "hhi", "tbill_apy_decimal", "risk_premium_decimal", "revision", "supersedes_cid",
                 "input_cid", "prev_cid", "cid"):
        assert row[name] == getattr(original, name), name
    assert row["flags"] == original.flags
    for name in ("bucket_end", "published_at", "inputs_max_event_time"):
        assert format_utc(row[name].replace(tzinfo=UTC)) == getattr(original, name)
    assert orjson.loads(row["constituents"]) == SYI["constituents"]


def test_later_ingest_of_the_same_tick_replaces_the_earlier(store):
    first = tick("binance", 0, 1.0001, ingest_delay_ms=10)
    again = tick("binance", 0, 1.0002, ingest_delay_ms=900)  # same natural key, re-ingested later
    store.insert(PRICES, [PRICES.row(again)])
    store.insert(PRICES, [PRICES.row(first)])  # arrival order does not matter: ingest_time decides
    (row,) = final_rows(store, "prices", "event_time")
    assert row["price"] == 1.0002


def test_every_revision_of_a_bucket_is_kept_and_each_collapses_to_one_row(store):
    store.insert(INDEX_VALUES, [INDEX_VALUES.row(index_value("SYI", 1, 4.00, revision=0))])
    store.insert(INDEX_VALUES, [INDEX_VALUES.row(index_value("SYI", 1, 4.40, revision=1))])
    store.insert(INDEX_VALUES, [INDEX_VALUES.row(index_value("SYI", 1, 4.00, revision=0))])  # a late replay
    store.client.command("OPTIMIZE TABLE index_values FINAL")  # merged: still one row per revision
    rows = store.query("SELECT revision, syi_percent FROM index_values ORDER BY revision")
    assert [(row["revision"], row["syi_percent"]) for row in rows] == [(0, 4.00), (1, 4.40)]


def test_a_table_of_the_collapsing_layout_moves_into_the_one_that_keeps_revisions(store):
    # the layout before revisions were kept: sorted by bucket, revision the version, no reason column
    store.client.command("DROP TABLE index_values")
    old_layout = (INDEX_VALUES.ddl.replace("ENGINE = ReplacingMergeTree\n", "ENGINE = ReplacingMergeTree(revision)\n")
                  .replace("ORDER BY (index_id, bucket_end, revision)", "ORDER BY (index_id, bucket_end)")
                  .replace("cid String,\n    restatement_reason Nullable(String)", "cid String"))
    assert old_layout.count("revision") == 2  # the column and the version
    store.client.command(old_layout)
    old_columns = list(INDEX_VALUES.columns[:-1])
    # three parts not merged yet: the old layout would collapse the first two into revision 1
    for value in (index_value("SYI", 1, 4.00), index_value("SYI", 1, 4.40, revision=1), index_value("SYI", 2, 4.10)):
        store.client.insert("index_values", [INDEX_VALUES.row(value)[:-1]], column_names=old_columns)

    store.ensure_schema()
    store.ensure_schema()  # the move is done once
    (table,) = store.query("SELECT sorting_key FROM system.tables WHERE database = currentDatabase() "
                           "AND name LIKE 'index_values%'")
    assert table["sorting_key"] == "index_id, bucket_end, revision"
    rows = final_rows(store, "index_values", "bucket_end, revision")
    assert [(r["revision"], r["syi_percent"], r["restatement_reason"]) for r in rows] == [
        (0, 4.00, None), (1, 4.40, None), (0, 4.10, None)]


# Valid messages whose bytes the typed columns alone could not give back, or only just: nulls,
# fields beyond docs/topics.md, times not written with milliseconds, awkward floats, empty sides.
EDGE_CASES = [
    ("cc.prices", PRICE),
    ("cc.prices", {**PRICE, "venue": "nobidask", "pair": None, "bid": None, "ask": None, "price": 0.1 + 0.2}),
    ("cc.prices", {**PRICE, "venue": "extra", "event_time": "2026-11-27T10:00:01Z",
                   "ingest_time": "2026-11-27T10:00:01.3012Z", "depth_hint": {"levels": [1, 2]}, "note": None}),
    ("cc.orderbook", BOOK_EXAMPLE),
    ("cc.orderbook", {**BOOK_EXAMPLE, "venue": "thin", "asks": [], "bids": [[1 / 3, 5e-324]]}),
    ("dl.apy", APY),
    ("dl.apy", {**APY, "pool": "p-2", "apy_base_pct": None, "apy_reward_pct": -0.0, "apy_pct": None,
                "stablecoin": False, "ingest_time": "2026-11-27T10:00:03.5Z"}),
    ("ex.mktcap", MKTCAP),
    ("ex.mktcap", {**MKTCAP, "symbol": "PYUSD", "price_usd": None, "market_cap_usd": 123456789.123456789}),
    ("trad.tbill", TBILL),
    # one poll can publish several dates at once: same event time, both kept
    ("trad.tbill", {**TBILL, "observation_date": "2026-11-24", "rate_pct": 4.1}),
    ("trad.tbill", {**TBILL, "observation_date": "1999-12-31", "basis": "investment",
                    "event_time": "2026-11-26T15:31:00Z", "ingest_time": "2026-11-26T15:31:00.000001Z",
                    "vintage": "2026-11-26"}),
]


def test_every_input_message_comes_back_byte_identical(store):
    by_topic: dict[str, list] = {}
    for topic, data in EDGE_CASES:
        by_topic.setdefault(topic, []).append(validate_value(topic, data))
    for topic, values in by_topic.items():
        store.insert(TABLE_FOR_TOPIC[topic], [TABLE_FOR_TOPIC[topic].row(v) for v in values])

    for table in INPUT_TABLES:
        rows = store.query(f"SELECT * FROM {table.name} FINAL")
        published = sorted(dumps(v) for v in by_topic[table.topic])
        assert sorted(dumps(table.model(row)) for row in rows) == published, table.name
    # what only the extra column keeps: the verbatim times and the fields beyond the contract
    extras = {r["venue"]: r["extra"] for r in store.query("SELECT venue, extra FROM prices FINAL")}
    assert extras["binance"] == ""
    assert orjson.loads(extras["extra"]) == {"event_time": "2026-11-27T10:00:01Z",
                                             "ingest_time": "2026-11-27T10:00:01.3012Z",
                                             "depth_hint": {"levels": [1, 2]}, "note": None}


def test_a_table_made_before_the_extra_column_gets_it(store):
    store.client.command("DROP TABLE tbills")
    store.client.command(TBILLS.ddl.replace(",\n    extra String DEFAULT ''", ""))
    old_columns = list(TBILLS.columns[:-1])
    value = validate_value("trad.tbill", TBILL)
    store.client.insert("tbills", [TBILLS.row(value)[:-1]], column_names=old_columns)
    assert "extra" not in {r["name"] for r in store.query("DESCRIBE TABLE tbills")}

    store.ensure_schema()
    (row,) = store.query("SELECT * FROM tbills FINAL")
    assert row["extra"] == "" and dumps(TBILLS.model(row)) == dumps(value)
