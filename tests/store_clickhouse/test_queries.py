"""The analyst queries on hand-checked data in real chDB (duplicates included on purpose)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from store_clickhouse import queries
from store_clickhouse.tables import INDEX_VALUES, ORDERBOOK, PRICES
from tests.store_clickhouse.records import T0, book, index_value, tick


@pytest.fixture
def prices(store):
    # minute 10:00 on binance: 1.0000, 1.0004, 0.9996, 1.0001; minute 10:01: 0.9990, 0.9995
    rows = [
        tick("binance", 1_000, 1.0000), tick("binance", 20_000, 1.0004),
        tick("binance", 40_000, 0.9996), tick("binance", 59_999, 1.0001),
        tick("binance", 60_000, 0.9990), tick("binance", 90_500, 0.9995),
        tick("kraken", 30_000, 1.0002),
        tick("binance", 5_000, 1.2, symbol="USDT"),
    ]
    store.client.command("SYSTEM STOP MERGES prices")  # duplicates stay visible without FINAL
    for _ in range(2):  # every tick delivered twice
        store.insert(PRICES, [PRICES.row(t) for t in rows])
    return store


def test_ohlc_per_minute_counts_each_tick_once(prices):
    bars = queries.ohlc_per_minute(prices.client, "USDC", venue="binance")
    assert [(b["minute"], b["open"], b["high"], b["low"], b["close"], b["ticks"]) for b in bars] == [
        (datetime(2026, 11, 27, 10, 0, tzinfo=UTC), 1.0000, 1.0004, 0.9996, 1.0001, 4),
        (datetime(2026, 11, 27, 10, 1, tzinfo=UTC), 0.9990, 0.9995, 0.9990, 0.9995, 2),
    ]


def test_ohlc_window_is_start_inclusive_end_exclusive(prices):
    bars = queries.ohlc_per_minute(
        prices.client, "USDC", start=datetime(2026, 11, 27, 10, 0, 20, tzinfo=UTC),
        end=datetime(2026, 11, 27, 10, 1, tzinfo=UTC),
    )
    assert [(b["venue"], b["open"], b["close"], b["ticks"]) for b in bars] == [
        ("binance", 1.0004, 1.0001, 3), ("kraken", 1.0002, 1.0002, 1),
    ]


def test_latest_price_per_symbol_and_venue(prices):
    latest = queries.latest_prices(prices.client)
    assert [(r["symbol"], r["venue"], r["price"], r["event_time"]) for r in latest] == [
        ("USDC", "binance", 0.9995, datetime(2026, 11, 27, 10, 1, 30, 500000, tzinfo=UTC)),
        ("USDC", "kraken", 1.0002, datetime(2026, 11, 27, 10, 0, 30, tzinfo=UTC)),
        ("USDT", "binance", 1.2, datetime(2026, 11, 27, 10, 0, 5, tzinfo=UTC)),
    ]
    assert [r["venue"] for r in queries.latest_prices(prices.client, symbol="USDT")] == ["binance"]


def test_depth_within_band_per_minute(store):
    # mid 1.0 in both books: ±50 bps keeps levels in [0.995, 1.005]
    first = book("binance", 0, bids=[(0.9999, 100.0), (0.996, 50.0), (0.99, 1000.0)],
                 asks=[(1.0001, 200.0), (1.01, 5000.0)])
    second = book("binance", 30_000, bids=[(0.9998, 300.0)], asks=[(1.0002, 100.0), (1.004, 10.0)])
    later = book("binance", 61_000, bids=[(0.9999, 10.0)], asks=[(1.0001, 10.0)])
    one_sided = book("binance", 62_000, bids=[(0.9999, 10.0)], asks=[])
    for _ in range(2):
        store.insert(ORDERBOOK, [ORDERBOOK.row(b) for b in (first, second, later, one_sided)])

    minutes = queries.depth_over_time(store.client, "USDC", venue="binance")
    assert len(minutes) == 2
    m0, m1 = minutes
    first_bid, first_ask = 0.9999 * 100 + 0.996 * 50, 1.0001 * 200
    second_bid, second_ask = 0.9998 * 300, 1.0002 * 100 + 1.004 * 10
    assert m0["bucket"] == T0 and m0["snapshots"] == 2
    assert m0["bid_depth"] == pytest.approx((first_bid + second_bid) / 2, rel=1e-12)
    assert m0["ask_depth"] == pytest.approx((first_ask + second_ask) / 2, rel=1e-12)
    assert m0["depth"] == pytest.approx((first_bid + first_ask + second_bid + second_ask) / 2, rel=1e-12)
    assert m0["spread_bps"] == pytest.approx((2.0 + 4.0) / 2, rel=1e-9)
    assert m1["snapshots"] == 1  # the one-sided book has no mid and is skipped
    assert m1["depth"] == pytest.approx(0.9999 * 10 + 1.0001 * 10, rel=1e-12)


def test_index_history_keeps_the_highest_revision_per_bucket(store):
    values = [index_value("SYI", m, 4.0 + m / 10) for m in range(1, 4)]
    restated = index_value("SYI", 2, 9.99, revision=1)
    store.insert(INDEX_VALUES, [INDEX_VALUES.row(v) for v in [*values, restated, values[0]]])
    history = queries.index_history(store.client, "SYI", start=datetime(2026, 11, 27, 10, 1, tzinfo=UTC))
    assert [(h["syi_percent"], h["revision"]) for h in history] == [(4.1, 0), (9.99, 1), (4.3, 0)]
    assert queries.index_history(store.client, "OTHER") == []


def test_index_history_as_of_a_time_and_a_buckets_revisions(store):
    # published 1.21 s after each bucket's end; the correction of 10:02 the next day
    values = [index_value("SYI", m, 4.0 + m / 10) for m in range(1, 4)]
    restated = index_value("SYI", 2, 9.99, revision=1)
    restated = restated.model_copy(update={"published_at": "2026-11-28T09:00:00.000Z",
                                           "supersedes_cid": values[1].cid})
    store.insert(INDEX_VALUES, [INDEX_VALUES.row(v) for v in [*values, restated]])
    before = queries.index_history(store.client, "SYI", as_of=datetime(2026, 11, 28, 8, 59, tzinfo=UTC))
    after = queries.index_history(store.client, "SYI", as_of=datetime(2026, 11, 28, 9, 0, tzinfo=UTC))
    early = queries.index_history(store.client, "SYI", as_of=datetime(2026, 11, 27, 10, 2, 30, tzinfo=UTC))
    assert [(h["syi_percent"], h["revision"]) for h in before] == [(4.1, 0), (4.2, 0), (4.3, 0)]
    assert [(h["syi_percent"], h["revision"]) for h in after] == [(4.1, 0), (9.99, 1), (4.3, 0)]
    assert [h["syi_percent"] for h in early] == [4.1, 4.2]  # 10:03 was not published yet

    revisions = queries.index_revisions(store.client, datetime(2026, 11, 27, 10, 2, tzinfo=UTC))
    assert [(r["revision"], r["syi_percent"], r["supersedes_cid"]) for r in revisions] == [
        (0, 4.2, None), (1, 9.99, values[1].cid)]
    assert queries.index_revisions(store.client, datetime(2026, 11, 27, 11, 0, tzinfo=UTC)) == []


def test_table_counts_show_duplicates_awaiting_a_merge(prices):
    counts = {c["table"]: (c["rows"], c["unique_rows"]) for c in queries.table_counts(prices.client)}
    assert counts == {"prices": (16, 8), "orderbook": (0, 0), "pool_yields": (0, 0), "market_caps": (0, 0),
                      "tbills": (0, 0), "index_values": (0, 0)}
