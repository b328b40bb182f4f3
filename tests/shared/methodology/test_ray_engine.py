"""RayEngine: small synthetic message sets, records checked field by field."""

from __future__ import annotations

import math
import pickle

import orjson
import pytest

from syi_shared.methodology import RayEngine, RayState, bucket_end_of, compute_run, load_methodology
from tests.shared.methodology.builders import (
    MIN,
    T0,
    at,
    book,
    deep_book,
    healthy,
    methodology_with,
    pool,
    positioned,
    price,
    published,
)

M = load_methodology()
B1 = T0 + MIN  # bucket 10:01, holding events in [10:00, 10:01)


def _close_through(engine: RayEngine, first: int, last: int):
    return [engine.close_bucket(t) for t in range(first, last + MIN, MIN)]


def _by_symbol(rows):
    return {row.symbol: row for row in rows}


def test_bucket_end_of_is_the_minute_end() -> None:
    assert bucket_end_of(T0) == T0 + MIN
    assert bucket_end_of(T0 + MIN - 1) == T0 + MIN
    assert bucket_end_of(T0 + MIN) == T0 + 2 * MIN


def test_hand_worked_bucket_with_stablecoin_quotes() -> None:
    messages = [
        # USDT's USD reference: median(1.001, 1.003) = 1.002
        ("cc.prices", price("USDT", 1.001, T0 + 1000, venue="coinbase")),
        ("cc.prices", price("USDT", 1.003, T0 + 2000, venue="kraken")),
        # USDC: 0.9998 USDT on binance = 1.0017996 USD; 1.0001 USD on coinbase
        ("cc.prices", price("USDC", 0.9998, T0 + 3000, venue="binance", quote="USDT")),
        ("cc.prices", price("USDC", 1.0001, T0 + 4000, venue="coinbase")),
        # a USDC/USDT book with 7 004 000 USDT within ±50 bps (measures USDC and USDT)
        ("cc.orderbook", book("USDC", T0 + 5000, bids=[(0.999, 1e6), (0.996, 2e6), (0.99, 5e6)],
                              asks=[(1.001, 1e6), (1.004, 3e6), (1.01, 5e6)], venue="binance", quote="USDT")),
        # a USDC/USD book with 1 000 000 USD
        ("cc.orderbook", book("USDC", T0 + 6000, bids=[(1.0, 5e5)], asks=[(1.0, 5e5)], venue="coinbase")),
        ("dl.apy", pool("USDC", 4.0, T0 + 7000, tvl=100e6, project="aave-v3")),
        ("dl.apy", pool("USDC", 4.4, T0 + 8000, tvl=300e6, project="compound-v3")),
    ]
    (bucket,), _ = compute_run(positioned(messages), M, published)
    assert bucket.bucket_end_ms == B1
    peg, liquidity, rays = _by_symbol(bucket.peg), _by_symbol(bucket.liquidity), _by_symbol(bucket.rays)
    assert [row.symbol for row in bucket.rays] == list(M.symbols)

    p = (0.9998 * 1.002 + 1.0001) / 2
    dev = 10_000 * (p - 1)  # 9.498 bps, inside δ = 10: loss dev²/2
    assert peg["USDC"].price_usd == pytest.approx(1.0009498, abs=1e-12)
    assert peg["USDC"].dev_bps == pytest.approx(9.498, abs=1e-8)
    assert peg["USDC"].peg_score == pytest.approx(1 - (dev * dev / 2) / 1950, abs=1e-12)
    assert peg["USDC"].sigma_peg_pct == 0.0
    assert (peg["USDC"].venues, peg["USDC"].flags, peg["USDC"].bucket_end) == (2, [], "2026-11-27T10:01:00.000Z")
    assert peg["USDC"].methodology_version == "3.0.0"

    depth = 7_004_000 * 1.002 + 1_000_000
    assert liquidity["USDC"].depth_usd == pytest.approx(depth, abs=1e-6)
    assert liquidity["USDC"].books == 2 and liquidity["USDC"].flags == []
    score = math.log10(1 + depth / 1e6) / math.log10(51)
    assert liquidity["USDC"].liquidity_score == pytest.approx(score, abs=1e-12)
    # The USDC/USDT book also measures USDT (a candidate quote).
    assert liquidity["USDT"].depth_usd == pytest.approx(7_004_000 * 1.002, abs=1e-6)
    assert liquidity["USDT"].books == 1

    usdc = rays["USDC"]
    assert usdc.apy_eff_decimal == pytest.approx((100 * 4.0 + 300 * 4.4) / 400 / 100, abs=1e-15)
    assert usdc.counterparty_score == 0.9
    assert usdc.s_worst == pytest.approx(score, abs=1e-12)  # liquidity is the weakest score
    assert usdc.ray_decimal == pytest.approx(0.043 * math.exp(-2 * (1 - score)), abs=1e-12)
    assert usdc.flags == []
    assert usdc.inputs_max_event_time == "2026-11-27T10:00:08.000Z"

    usdt = rays["USDT"]
    assert usdt.price_usd == pytest.approx(1.002, abs=1e-15)
    assert (usdt.apy_eff_decimal, usdt.ray_decimal, usdt.flags) == (None, None, ["no_apy"])
    assert usdt.s_worst == pytest.approx(min(usdt.peg_score, usdt.liquidity_score, 0.75), abs=0)

    dai = rays["DAI"]
    assert dai.flags == ["stale_price", "stale_book", "no_apy"]
    assert (dai.price_usd, dai.dev_bps, dai.peg_score, dai.sigma_peg_pct, dai.depth_usd, dai.liquidity_score) == (None,) * 6
    assert (dai.s_worst, dai.ray_decimal, dai.counterparty_score) == (None, None, 0.85)
    assert dai.inputs_max_event_time is None
    assert _by_symbol(bucket.peg)["DAI"].flags == ["stale_price"]
    assert _by_symbol(bucket.liquidity)["DAI"].flags == ["stale_book"]


def test_quote_without_usd_reference_is_assumed_and_flagged() -> None:
    messages = [("cc.prices", price("USDC", 0.9995, T0 + 1000, quote="FDUSD")),
                ("cc.orderbook", book("USDC", T0 + 1000, bids=[(0.9995, 1e6)], asks=[(0.9995, 1e6)], quote="FDUSD"))]
    (bucket,), _ = compute_run(positioned(messages), M, published)
    usdc = _by_symbol(bucket.rays)["USDC"]
    assert usdc.price_usd == 0.9995
    assert usdc.depth_usd == pytest.approx(2 * 0.9995e6, abs=1e-6)
    assert usdc.flags == ["no_apy", "usd_reference_assumed"]
    assert _by_symbol(bucket.peg)["USDC"].flags == ["usd_reference_assumed"]
    assert _by_symbol(bucket.liquidity)["USDC"].flags == ["usd_reference_assumed"]


def test_input_stamped_on_the_bucket_end_belongs_to_the_next_bucket() -> None:
    engine = RayEngine(M)
    engine.observe("cc.prices", price("USDC", 1.001, B1))  # exactly 10:01:00.000
    first, second = _close_through(engine, B1, B1 + MIN)
    assert _by_symbol(first.peg)["USDC"].price_usd is None
    assert _by_symbol(second.peg)["USDC"].price_usd == 1.001


def test_latest_is_by_event_time_then_ingest_time_then_position() -> None:
    engine = RayEngine(M)
    # observed in the "wrong" order on purpose
    engine.observe("cc.prices", price("USDC", 1.004, T0 + 5000, ingest_ms=T0 + 9000), (0, 1))
    engine.observe("cc.prices", price("USDC", 1.003, T0 + 5000, ingest_ms=T0 + 9000), (0, 2))  # later position
    engine.observe("cc.prices", price("USDC", 1.002, T0 + 5000, ingest_ms=T0 + 6000), (0, 3))  # earlier ingest
    engine.observe("cc.prices", price("USDC", 1.001, T0 + 4000, ingest_ms=T0 + 9999), (0, 4))  # earlier event
    (bucket,) = _close_through(engine, B1, B1)
    assert _by_symbol(bucket.peg)["USDC"].price_usd == 1.003


def test_price_fresh_at_exactly_max_age_then_stale() -> None:
    engine = RayEngine(M)
    engine.observe("cc.prices", price("USDC", 1.001, T0))  # 10:00:00.000, max age 600 s
    buckets = _close_through(engine, B1, T0 + 11 * MIN)
    at_max_age = _by_symbol(buckets[-2].rays)["USDC"]  # bucket 10:10: exactly 600 s old
    assert buckets[-2].bucket_end_ms - T0 == 600_000
    assert at_max_age.price_usd == 1.001 and "stale_price" not in at_max_age.flags
    assert _by_symbol(buckets[-1].rays)["USDC"].price_usd is None  # 10:11: 660 s old
    assert "stale_price" in _by_symbol(buckets[-1].rays)["USDC"].flags
    assert len(engine.state.prices) == 0  # the stale observation was pruned


def test_book_and_apy_freshness_at_their_max_age() -> None:
    engine = RayEngine(M)
    engine.observe("cc.orderbook", deep_book("USDC", T0))
    engine.observe("dl.apy", pool("USDC", 4.0, T0))
    buckets = _close_through(engine, B1, T0 + 121 * MIN)
    rays = [_by_symbol(bucket.rays)["USDC"] for bucket in buckets]
    assert rays[4].depth_usd == 60e6  # 10:05, 300 s old
    assert rays[5].depth_usd is None  # 10:06
    assert rays[119].apy_eff_decimal == 0.04  # 12:00, 7 200 s old
    assert rays[120].apy_eff_decimal is None and "no_apy" in rays[120].flags


def test_book_with_an_empty_side_hides_the_older_snapshot() -> None:
    engine = RayEngine(M)
    engine.observe("cc.orderbook", deep_book("USDC", T0 + 1000))
    engine.observe("cc.orderbook", book("USDC", T0 + 2000, bids=[(0.999, 1e6)], asks=[]))
    (bucket,) = _close_through(engine, B1, B1)
    liquidity = _by_symbol(bucket.liquidity)["USDC"]
    assert (liquidity.depth_usd, liquidity.books, liquidity.flags) == (None, 0, ["stale_book"])


def test_latest_pool_observation_failing_a_filter_hides_the_older_one() -> None:
    engine = RayEngine(M)
    engine.observe("dl.apy", pool("USDC", 4.0, T0 + 1000, pool_id="p1", tvl=50e6))
    engine.observe("dl.apy", pool("USDC", 4.0, T0 + 2000, pool_id="p1", tvl=5e6))  # TVL fell below 10 M
    engine.observe("dl.apy", pool("USDC", 6.0, T0 + 1000, pool_id="p2", tvl=50e6))
    (bucket,) = _close_through(engine, B1, B1)
    assert _by_symbol(bucket.rays)["USDC"].apy_eff_decimal == 0.06


def test_outlier_pool_is_dropped_and_high_apy_flagged() -> None:
    messages = [("dl.apy", pool("DAI", rate, T0 + 1000, pool_id=f"p{i}")) for i, rate in enumerate([4.0, 4.2, 4.1, 4.3, 12.0])]
    messages += [("dl.apy", pool("FRAX", 80.0, T0 + 1000, pool_id="frax"))]
    (bucket,), _ = compute_run(positioned(messages), M, published)
    rays = _by_symbol(bucket.rays)
    assert rays["DAI"].apy_eff_decimal == pytest.approx(0.0415, abs=1e-15)
    assert rays["FRAX"].apy_eff_decimal == 0.5
    assert rays["FRAX"].flags == ["stale_price", "stale_book", "apy_high", "apy_capped"]


def test_peg_windows_hand_worked_over_buckets() -> None:
    m = methodology_with(freshness_seconds={"price": 30}, peg={"window_minutes": 3})
    prices = {0: 1.001, 2: 0.998, 3: 1.0, 4: 1.0005}  # minute index → price (none in minute 1)
    messages = [("cc.prices", price("USDC", value, T0 + i * MIN + 45_000)) for i, value in prices.items()]
    buckets, _ = compute_run(positioned(messages), m, published)
    peg = [_by_symbol(bucket.peg)["USDC"] for bucket in buckets]
    losses = {0: 50.0, 2: 150.0, 3: 0.0, 4: 12.5}  # huber of 10, −20, 0, 5 bps
    assert peg[0].peg_score == pytest.approx(1 - 50 / 1950, abs=1e-12)
    assert (peg[1].price_usd, peg[1].peg_score, peg[1].sigma_peg_pct, peg[1].flags) == (None, None, None, ["stale_price"])
    assert peg[2].peg_score == pytest.approx(1 - (losses[0] + losses[2]) / 2 / 1950, abs=1e-12)
    # window (t − 3 min, t]: bucket 0 has left it at minute 3
    assert peg[3].peg_score == pytest.approx(1 - (losses[2] + losses[3]) / 2 / 1950, abs=1e-12)
    assert peg[4].peg_score == pytest.approx(1 - (losses[2] + losses[3] + losses[4]) / 3 / 1950, abs=1e-12)
    # σ keeps 30 days: 100·(p − 1) = 0.1, −0.2, 0, 0.05
    xs = [0.1, -0.2, 0.0, 0.05]
    mean = sum(xs) / 4
    assert peg[4].sigma_peg_pct == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in xs) / 4), abs=1e-12)
    assert peg[0].sigma_peg_pct == 0.0


def test_sigma_window_drops_buckets_older_than_30_days() -> None:
    engine = RayEngine(M)
    engine.observe("cc.prices", price("USDC", 1.01, T0))
    engine.close_bucket(B1)
    engine.observe("cc.prices", price("USDC", 1.0, B1 + 1000))
    engine.close_bucket(B1 + MIN)
    assert len(engine.state.peg_prices["USDC"]) == 2
    # Jump the window forward by restoring a state whose last bucket is 30 days later (no gap rule inside a state).
    state = engine.state
    state.last_bucket_ms = B1 + 30 * 1440 * MIN - MIN
    engine.observe("cc.prices", price("USDC", 1.0, state.last_bucket_ms + 1000))
    row = _by_symbol(engine.close_bucket(state.last_bucket_ms + MIN).peg)["USDC"]
    # (t − 30 d, t] now starts after the first bucket: σ over 0, 0 only
    assert row.sigma_peg_pct == 0.0
    assert len(engine.state.peg_prices["USDC"]) == 2
    assert len(engine.state.peg_losses["USDC"]) == 1  # 24 h window


def test_buckets_must_close_in_order_without_gaps() -> None:
    engine = RayEngine(M)
    engine.close_bucket(B1)
    with pytest.raises(ValueError, match="without gaps"):
        engine.close_bucket(B1 + 2 * MIN)
    with pytest.raises(ValueError, match="without gaps"):
        engine.close_bucket(B1)
    with pytest.raises(ValueError, match="whole minute"):
        RayEngine(M).close_bucket(B1 + 1)
    with pytest.raises(ValueError, match="does not take"):
        engine.observe("ex.mktcap", price("USDC", 1.0, T0))  # type: ignore[arg-type]


def _stream(messages, m=M):
    """A streaming caller: observes everything it has (later buckets too) before closing."""
    engine = RayEngine(m)
    for topic, value, position in reversed(positioned(messages)):
        engine.observe(topic, value, position)
    last = max(bucket_end_of(int(_ms(value.event_time))) for _, value in messages)
    return _close_through(engine, B1, last)


def _ms(text: str) -> int:
    from syi_shared.methodology.engine import millis

    return millis(text)


def _scenario() -> list:
    messages = []
    for minute in range(8):
        for symbol in ("USDT", "USDC", "DAI"):
            if (symbol, minute) in {("DAI", 3), ("DAI", 4)}:
                continue
            messages += healthy(symbol, T0 + minute * MIN + 1000 + 7 * minute, value=1 + 0.0002 * (minute % 3))
    messages.append(("cc.prices", price("USDC", 0.9991, T0 + 2 * MIN + 500, venue="kraken", quote="USDT")))
    return messages


def test_observing_later_messages_early_changes_nothing() -> None:
    messages = _scenario()
    batch, _ = compute_run(positioned(messages), M, published)
    streamed = _stream(messages)
    assert [orjson.dumps([r.model_dump() for r in b.rays]) for b in streamed] == [
        orjson.dumps([r.model_dump() for r in b.rays]) for b in batch
    ]
    assert [b.peg for b in streamed] == [b.peg for b in batch]
    assert [b.liquidity for b in streamed] == [b.liquidity for b in batch]


@pytest.mark.parametrize("via", ["json", "pickle"])
def test_state_snapshot_resumes_exactly(via: str) -> None:
    messages = _scenario()
    batch, _ = compute_run(positioned(messages), M, published)
    by_bucket: dict[int, list] = {}
    for topic, value, position in positioned(messages):
        by_bucket.setdefault(bucket_end_of(_ms(value.event_time)), []).append((topic, value, position))
    engine = RayEngine(M)
    resumed = []
    for t in sorted(by_bucket):
        for topic, value, position in by_bucket[t]:
            engine.observe(topic, value, position)
        resumed.append(engine.close_bucket(t))
        # snapshot and restore after every bucket
        if via == "json":
            engine = RayEngine(M, RayState.from_dict(orjson.loads(orjson.dumps(engine.state.to_dict()))))
        else:
            engine = RayEngine(M, pickle.loads(pickle.dumps(engine.state)))
    assert [b.rays for b in resumed] == [b.rays for b in batch]
    assert [b.peg for b in resumed] == [b.peg for b in batch]


def test_state_keeps_only_live_observations() -> None:
    engine = RayEngine(M)
    for minute in range(30):
        engine.observe("cc.prices", price("USDC", 1.0, T0 + minute * MIN + 1000))
        engine.observe("cc.orderbook", deep_book("USDC", T0 + minute * MIN + 1000))
        engine.close_bucket(B1 + minute * MIN)
    assert len(engine.state.prices) == 1 and len(engine.state.books) == 1
    assert at(engine.state.last_bucket_ms) == "2026-11-27T10:30:00.000Z"


def test_price_field_is_used_as_published_and_one_stream_per_venue() -> None:
    engine = RayEngine(M)
    tick = price("USDC", 1.005, T0 + 1000).model_copy(update={"bid": 0.99, "ask": 1.01})
    engine.observe("cc.prices", tick)
    # The same venue later quotes the coin in USDT: it replaces the USD tick (key symbol.venue).
    engine.observe("cc.prices", price("USDC", 0.999, T0 + 2000, quote="USDT"))
    engine.observe("cc.prices", price("USDT", 1.001, T0 + 3000, venue="kraken"))
    (bucket,) = _close_through(engine, B1, B1)
    assert _by_symbol(bucket.peg)["USDC"].price_usd == pytest.approx(0.999 * 1.001, abs=1e-15)
    assert _by_symbol(bucket.peg)["USDC"].venues == 1
    engine = RayEngine(M)
    engine.observe("cc.prices", tick)
    (bucket,) = _close_through(engine, B1, B1)
    assert _by_symbol(bucket.peg)["USDC"].price_usd == 1.005


def test_non_candidate_quote_gets_its_usd_reference_too() -> None:
    engine = RayEngine(M)
    engine.observe("cc.prices", price("FDUSD", 0.998, T0 + 1000, venue="coinbase"))
    engine.observe("cc.prices", price("USDC", 1.001, T0 + 2000, quote="FDUSD"))
    (bucket,) = _close_through(engine, B1, B1)
    usdc = _by_symbol(bucket.rays)["USDC"]
    assert usdc.price_usd == pytest.approx(1.001 * 0.998, abs=1e-15)
    assert "usd_reference_assumed" not in usdc.flags
    assert "FDUSD" not in [row.symbol for row in bucket.rays]


def test_duplicate_delivery_counts_once() -> None:
    engine = RayEngine(M)
    for _ in range(3):
        engine.observe("cc.prices", price("USDC", 1.001, T0 + 1000), (2, 17))
    assert len(engine.state.prices) == 1
    engine.observe("cc.prices", price("USDC", 1.001, T0 + 1000), (2, 18))  # a second, distinct message
    assert len(engine.state.prices) == 2


def test_late_input_is_used_by_later_buckets_only() -> None:
    engine = RayEngine(M)
    engine.observe("cc.prices", price("USDC", 1.001, T0 + 1000))
    engine.close_bucket(B1)
    engine.observe("cc.prices", price("USDC", 1.004, T0 + 2000))  # late: its bucket is closed
    row = _by_symbol(engine.close_bucket(B1 + MIN).peg)["USDC"]
    assert row.price_usd == 1.004
