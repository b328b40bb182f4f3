"""IndexEngine and compute_run: weights, rebalances, exclusions, status, T-bill, audit chain."""

from __future__ import annotations

import math
import pickle

import orjson
import pytest

from syi_shared.methodology import IndexEngine, IndexState, compute_run, load_methodology
from syi_shared.methodology.audit import input_cid, record_cid_of
from syi_shared.methodology.tbill import discount_to_apy
from syi_shared.models import IndexValue
from syi_shared.serde import dumps
from syi_shared.timefmt import parse_utc, to_millis
from tests.shared.methodology.builders import (
    CAPS,
    MIN,
    T0,
    at,
    caps_at,
    healthy,
    methodology_with,
    mktcap,
    positioned,
    price,
    published,
    tbill,
)

M = load_methodology()
B1 = T0 + MIN
ALL = tuple(CAPS)
COUNTERPARTY = {"USDT": 0.75, "USDC": 0.9, "DAI": 0.85, "TUSD": 0.8, "FRAX": 0.75, "USDP": 0.85}
# Hand-worked capped weights of CAPS (σ = 0): USDT and USDC capped at 0.45 in two rounds, the
# remaining 0.1 shared by DAI, FRAX, USDP pro rata (TUSD's 5e8 is below the 1e9 minimum).
WEIGHTS = {"USDT": 0.45, "USDC": 0.45, "DAI": 0.1 * 5 / 7.3, "FRAX": 0.1 * 1.2 / 7.3, "USDP": 0.1 * 1.1 / 7.3}


def _minutes(count: int, symbols=ALL, start: int = T0, offset_ms: int = 1000, skip=frozenset()) -> list:
    messages = []
    for minute in range(count):
        for symbol in symbols:
            if (symbol, minute) not in skip:
                messages += healthy(symbol, start + minute * MIN + offset_ms)
    return messages


def _run(messages, m=M):
    return compute_run(positioned(messages), m, published)


def _ray(cp: float) -> float:
    return 0.04 * math.exp(-2 * (1 - cp))


def test_first_bucket_rebalances_and_publishes_hand_worked_value() -> None:
    messages = caps_at(T0 + 500) + _minutes(1) + [("trad.tbill", tbill(4.12, T0 + 200))]
    buckets, (value,) = _run(messages)
    assert value.bucket_end == "2026-11-27T10:01:00.000Z"
    assert [row.symbol for row in value.constituents] == ["USDT", "USDC", "DAI", "FRAX", "USDP"]  # file order, weight set only
    for row in value.constituents:
        assert row.weight == pytest.approx(WEIGHTS[row.symbol], abs=1e-15)
        assert row.weight_renormalised == pytest.approx(WEIGHTS[row.symbol], abs=1e-15)
        assert row.counterparty_score == COUNTERPARTY[row.symbol]
        assert (row.peg_score, row.liquidity_score, row.apy_eff_decimal) == (1.0, 1.0, 0.04)
        assert row.s_worst == COUNTERPARTY[row.symbol]
        assert row.ray_decimal == pytest.approx(_ray(COUNTERPARTY[row.symbol]), abs=1e-15)
        assert row.market_cap_usd == CAPS[row.symbol]
        assert row.excluded_reason is None
    syi = sum(WEIGHTS[s] * _ray(COUNTERPARTY[s]) for s in WEIGHTS)
    assert value.syi_decimal == pytest.approx(syi, abs=1e-15)
    assert value.syi_percent == pytest.approx(syi * 100, abs=1e-13)
    assert value.coverage == pytest.approx(1.0, abs=1e-15)
    assert value.hhi == pytest.approx(10_000 * sum(w * w for w in WEIGHTS.values()), abs=1e-9)
    assert value.status == "ok"
    assert value.tbill_apy_decimal == pytest.approx(0.0428853655358, abs=1e-12)
    assert value.risk_premium_decimal == pytest.approx(syi - discount_to_apy(0.0412), abs=1e-15)
    assert value.flags == ["rebalanced"]
    assert value.methodology_version == "3.0.0" and value.index_id == "SYI" and value.revision == 0
    assert value.inputs_max_event_time == "2026-11-27T10:00:01.000Z"
    assert value.published_at == "2026-11-27T10:01:01.000Z"
    assert value.prev_cid is None and value.cid.startswith("bafkrei") and value.input_cid.startswith("bafkrei")
    assert value.key() == "SYI"
    assert len(buckets[0].rays) == 6


def test_rebalance_is_retried_every_bucket_until_enough_are_eligible() -> None:
    # Market caps arrive only in minute 3: nothing is published before, the rebalance succeeds then.
    messages = _minutes(5) + caps_at(T0 + 3 * MIN + 100)
    buckets, values = _run(messages)
    assert len(buckets) == 5
    assert [v.bucket_end for v in values] == [at(T0 + 4 * MIN), at(T0 + 5 * MIN)]
    assert values[0].flags == ["rebalanced", "no_tbill"]
    assert values[1].flags == ["no_tbill"]
    assert values[0].prev_cid is None and values[1].prev_cid == values[0].cid


def test_daily_rebalance_at_0001_and_weights_fixed_in_between() -> None:
    start = to_millis(parse_utc("2026-11-27T23:57:00.000Z"))
    messages = caps_at(start + 100) + _minutes(6, start=start)
    # DAI's market cap jumps at 23:59:30: not used before the 00:01 rebalance.
    messages.append(("ex.mktcap", mktcap("DAI", 3e10, start + 2 * MIN + 30_000)))
    _, values = _run(messages)
    by_end = {v.bucket_end: v for v in values}
    weights = lambda v: {row.symbol: row.weight for row in v.constituents}  # noqa: E731
    assert by_end["2026-11-27T23:58:00.000Z"].flags == ["rebalanced", "no_tbill"]
    assert weights(by_end["2026-11-28T00:00:00.000Z"]) == weights(by_end["2026-11-27T23:58:00.000Z"])
    assert by_end["2026-11-28T00:00:00.000Z"].constituents[2].market_cap_usd == 3e10  # shown, not weighted
    rebalanced = by_end["2026-11-28T00:01:00.000Z"]
    assert rebalanced.flags == ["rebalanced", "no_tbill"]
    # caps 1.2e11, 7.5e10, 3e10, 1.2e9, 1.1e9: USDT capped, then USDC (0.55·75/107.3 = 0.3844 < 0.45)
    assert weights(rebalanced)["USDT"] == 0.45
    assert weights(rebalanced)["DAI"] == pytest.approx(0.55 * 30 / 107.3, abs=1e-15)
    assert weights(by_end["2026-11-28T00:02:00.000Z"]) == weights(rebalanced)
    assert by_end["2026-11-28T00:02:00.000Z"].flags == ["no_tbill"]


def test_failed_daily_rebalance_keeps_weights_and_retries() -> None:
    m = methodology_with(freshness_seconds={"price": 30})
    start = to_millis(parse_utc("2026-11-27T23:58:00.000Z"))
    messages = caps_at(start + 100)
    for minute in range(5):
        for symbol in ALL:
            # In the minute before 00:01 only USDT and USDC stay on peg: 2 < n_min eligible.
            depegged = minute == 2 and symbol not in ("USDT", "USDC")
            messages += [(t, v) for t, v in healthy(symbol, start + minute * MIN + 45_000)
                         if t != "cc.prices"]
            messages.append(("cc.prices", price(symbol, 0.95 if depegged else 1.0, start + minute * MIN + 45_000)))
    _, values = _run(messages, m)
    by_end = {v.bucket_end: v for v in values}
    first, failed, retried = (by_end[f"2026-11-2{d}T{hm}:00.000Z"] for d, hm in (("7", "23:59"), ("8", "00:01"), ("8", "00:02")))
    assert first.flags == ["rebalanced", "no_tbill"]
    assert failed.flags == ["rebalance_failed", "no_tbill"]
    assert [(r.symbol, r.weight) for r in failed.constituents] == [(r.symbol, r.weight) for r in first.constituents]
    assert retried.flags == ["rebalanced", "no_tbill"]
    assert by_end["2026-11-28T00:03:00.000Z"].flags == ["no_tbill"]


def test_stale_constituents_are_excluded_and_status_degraded() -> None:
    m = methodology_with(freshness_seconds={"price": 30, "orderbook": 30})
    skip = {(symbol, 1) for symbol in ("USDC", "DAI", "FRAX")}
    messages = caps_at(T0 + 100) + _minutes(2, offset_ms=45_000, skip=skip)
    messages += [("cc.orderbook", v) for t, v in healthy("USDC", T0 + MIN + 45_000) if t == "cc.orderbook"]
    _, (ok, degraded) = _run(messages, m)
    assert ok.status == "ok"
    rows = {row.symbol: row for row in degraded.constituents}
    assert [rows[s].excluded_reason for s in ("USDT", "USDC", "DAI", "FRAX", "USDP")] == [None, "stale_price", "stale_price", "stale_price", None]
    for symbol in ("USDC", "DAI", "FRAX"):
        assert rows[symbol].weight_renormalised == 0 and rows[symbol].ray_decimal is None
        assert rows[symbol].weight == pytest.approx(WEIGHTS[symbol], abs=1e-15)  # the weight stays in force
    assert rows["USDC"].liquidity_score == 1.0 and rows["USDC"].peg_score is None
    coverage = WEIGHTS["USDT"] + WEIGHTS["USDP"]
    assert degraded.coverage == pytest.approx(coverage, abs=1e-15)
    assert degraded.status == "degraded"  # 2 included < n_min = 3, and coverage 0.465 < 0.5
    assert rows["USDT"].weight_renormalised == pytest.approx(0.45 / coverage, abs=1e-15)
    expected = (0.45 * _ray(0.75) + WEIGHTS["USDP"] * _ray(0.85)) / coverage
    assert degraded.syi_decimal == pytest.approx(expected, abs=1e-15)
    assert degraded.hhi == pytest.approx(10_000 * ((0.45 / coverage) ** 2 + (WEIGHTS["USDP"] / coverage) ** 2), abs=1e-9)


def test_degraded_by_coverage_alone() -> None:
    m = methodology_with(freshness_seconds={"apy": 30})
    skip_apy = [("USDT", 1), ("USDC", 1)]
    messages = caps_at(T0 + 100) + _minutes(2, offset_ms=45_000)
    messages = [(t, v) for t, v in messages
                if not (t == "dl.apy" and (v.symbol, (to_millis(parse_utc(v.event_time)) - T0) // MIN) in skip_apy)]
    _, (_, value) = _run(messages, m)
    reasons = [row.excluded_reason for row in value.constituents]
    assert reasons == ["no_apy", "no_apy", None, None, None]
    assert len([r for r in reasons if r is None]) == 3  # |I| = n_min …
    assert value.coverage == pytest.approx(0.1, abs=1e-15) and value.status == "degraded"  # … but coverage < 0.5


def test_nothing_published_when_every_weighted_constituent_is_excluded() -> None:
    m = methodology_with(freshness_seconds={"price": 30})
    messages = caps_at(T0 + 100) + _minutes(1, offset_ms=45_000)
    messages += [(t, v) for t, v in _minutes(1, start=T0 + MIN, offset_ms=45_000) if t != "cc.prices"]
    buckets, values = _run(messages, m)
    assert len(buckets) == 2 and [v.bucket_end for v in values] == [at(B1)]


def test_cap_infeasible_is_flagged_and_weights_left_uncapped() -> None:
    m = methodology_with(weights={"n_min": 2})
    messages = caps_at(T0 + 100, {"USDT": 6e10, "USDC": 4e10}) + _minutes(1, symbols=("USDT", "USDC"))
    _, (value,) = _run(messages, m)
    assert {row.symbol: row.weight for row in value.constituents} == {"USDT": 0.6, "USDC": 0.4}
    assert value.flags == ["rebalanced", "cap_infeasible", "no_tbill"]


def _close_first_bucket_with(extra: list) -> IndexValue:
    """Bucket 10:01 of a healthy basket, with extra index inputs observed straight into the engine."""
    messages = caps_at(T0 + 100) + _minutes(1)
    (bucket,), _ = _run(messages)
    engine = IndexEngine(M)
    for topic, value, position in positioned(caps_at(T0 + 100) + extra):
        engine.observe(topic, value, position)
    for record in bucket.rays:
        engine.observe("ray.calculated", record)
    value = engine.close_bucket(B1, published(B1))
    assert value is not None
    return value


def test_tbill_must_be_fresh_dtb3_discount() -> None:
    week = 604_800_000
    value = _close_first_bucket_with([("trad.tbill", tbill(4.12, B1 - week))])  # exactly 7 days old
    assert value.tbill_apy_decimal == pytest.approx(0.0428853655358, abs=1e-12) and "no_tbill" not in value.flags
    assert value.inputs_max_event_time == "2026-11-27T10:00:01.000Z"
    value = _close_first_bucket_with([("trad.tbill", tbill(4.12, B1 - week - 1))])
    assert (value.tbill_apy_decimal, value.risk_premium_decimal) == (None, None) and value.flags[-1] == "no_tbill"
    value = _close_first_bucket_with([("trad.tbill", tbill(4.12, T0, basis="investment"))])
    assert value.tbill_apy_decimal is None and "no_tbill" in value.flags
    # the latest as of t counts: a newer investment-basis value hides an older discount one
    value = _close_first_bucket_with([("trad.tbill", tbill(4.0, T0)), ("trad.tbill", tbill(4.12, T0 + 1, basis="investment"))])
    assert value.tbill_apy_decimal is None


def test_market_cap_fresh_at_exactly_48_hours() -> None:
    two_days = 172_800_000
    old_caps = [("ex.mktcap", mktcap(s, c, B1 - two_days)) for s, c in CAPS.items()]
    buckets, _ = _run(_minutes(2))
    engine = IndexEngine(M)
    for topic, value, position in positioned(old_caps):
        engine.observe(topic, value, position)
    values = []
    for bucket in buckets:
        for record in bucket.rays:
            engine.observe("ray.calculated", record)
        values.append(engine.close_bucket(bucket.bucket_end_ms, published(bucket.bucket_end_ms)))
    assert values[0] is not None and values[0].constituents[0].market_cap_usd == CAPS["USDT"]
    # One minute later the caps are stale: the weights stay in force, the rows show no cap.
    assert values[1] is not None and [row.market_cap_usd for row in values[1].constituents] == [None] * 5
    assert values[1].coverage == pytest.approx(1.0, abs=1e-15)


def test_audit_chain_links_and_hashes_exactly_the_inputs_used() -> None:
    messages = caps_at(T0 + 500) + _minutes(3) + [("trad.tbill", tbill(4.12, T0 + 200))]
    buckets, values = _run(messages)
    assert [v.prev_cid for v in values] == [None, values[0].cid, values[1].cid]
    the_tbill = [("trad.tbill", tbill(4.12, T0 + 200))]
    for bucket, value in zip(buckets, values):
        assert value.cid == record_cid_of(value)
        rays = [("ray.calculated", r) for r in bucket.rays]
        # A rebalance looks at every candidate's market cap (TUSD too); other buckets use the weight set's.
        symbols = ALL if "rebalanced" in value.flags else tuple(WEIGHTS)
        caps = [("ex.mktcap", mktcap(s, CAPS[s], T0 + 500)) for s in symbols]
        assert value.input_cid == input_cid(rays + caps + the_tbill)
        assert value.input_cid == input_cid(list(reversed(rays + caps + the_tbill)))  # canonical order
    assert values[0].input_cid != values[1].input_cid
    # Tampering with any hashed field breaks the record's cid.
    tampered = values[1].model_copy(update={"syi_decimal": values[1].syi_decimal + 1e-12})
    assert record_cid_of(tampered) != values[1].cid
    # published_at is not hashed.
    assert record_cid_of(values[1].model_copy(update={"published_at": "2030-01-01T00:00:00.000Z"})) == values[1].cid


def test_same_inputs_give_byte_identical_records() -> None:
    messages = caps_at(T0 + 500) + _minutes(4) + [("trad.tbill", tbill(4.12, T0 + 200))]
    first = [dumps(v) for v in _run(messages)[1]]
    second = [dumps(v) for v in _run(list(messages))[1]]
    assert first == second and len(first) == 4
    for raw in first:
        assert IndexValue.model_validate(orjson.loads(raw)).cid == orjson.loads(raw)["cid"]


def test_compute_run_ignores_other_topics_and_empty_input() -> None:
    assert compute_run([], M, published) == ([], [])
    messages = caps_at(T0 + 500) + _minutes(2)
    plain = _run(messages)[1]
    ray_record = _run(messages)[0][0].rays[0]
    noisy = [("ray.calculated", ray_record), ("syi.calculated", plain[0])] + messages
    assert [dumps(v) for v in _run(noisy)[1]] == [dumps(v) for v in plain]


@pytest.mark.parametrize("via", ["json", "pickle"])
def test_index_state_snapshot_resumes_the_chain(via: str) -> None:
    messages = caps_at(T0 + 500) + _minutes(4) + [("trad.tbill", tbill(4.12, T0 + 200))]
    buckets, expected = _run(messages)
    engine = IndexEngine(M)
    for topic, value, position in positioned(messages):
        if topic in ("ex.mktcap", "trad.tbill"):
            engine.observe(topic, value, position)
    produced = []
    for bucket in buckets:
        for record in bucket.rays:
            engine.observe("ray.calculated", record)
        produced.append(engine.close_bucket(bucket.bucket_end_ms, published(bucket.bucket_end_ms)))
        state = engine.state
        restored = IndexState.from_dict(orjson.loads(orjson.dumps(state.to_dict()))) if via == "json" else pickle.loads(pickle.dumps(state))
        engine = IndexEngine(M, restored)
    assert [dumps(v) for v in produced] == [dumps(v) for v in expected]


def test_late_ray_record_for_a_closed_bucket_is_ignored() -> None:
    messages = caps_at(T0 + 500) + _minutes(1)
    buckets, _ = _run(messages)
    engine = IndexEngine(M)
    engine.close_bucket(B1, published(B1))
    engine.observe("ray.calculated", buckets[0].rays[0])
    assert engine.state.rays == {}


def test_missing_ray_record_excludes_with_no_ray() -> None:
    buckets, _ = _run(caps_at(T0 + 100) + _minutes(2))
    engine = IndexEngine(M)
    for topic, value, position in positioned(caps_at(T0 + 100)):
        engine.observe(topic, value, position)
    for record in buckets[0].rays:
        engine.observe("ray.calculated", record)
    engine.close_bucket(B1, published(B1))
    for record in buckets[1].rays:
        if record.symbol != "USDC":  # ray-calc's USDC record for 10:02 never arrives
            engine.observe("ray.calculated", record)
    value = engine.close_bucket(B1 + MIN, published(B1 + MIN))
    assert value is not None
    rows = {row.symbol: row for row in value.constituents}
    assert rows["USDC"].excluded_reason == "no_ray" and rows["USDC"].weight_renormalised == 0
    assert (rows["USDC"].counterparty_score, rows["USDC"].peg_score, rows["USDC"].ray_decimal) == (0.9, None, None)
    assert value.coverage == pytest.approx(0.55, abs=1e-15)
