"""Property-based tests (hypothesis): weights, SYI bounds, independence from message order."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syi_shared.methodology import bucket_end_of, compute_run, load_methodology
from syi_shared.methodology.engine import millis
from syi_shared.methodology.index import aggregate
from syi_shared.methodology.state import History
from syi_shared.methodology.weights import CandidateView, normalise, rebalance, water_fill
from syi_shared.serde import dumps
from tests.shared.methodology.builders import MIN, T0, book, caps_at, pool, positioned, price, published, tbill

M = load_methodology()
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

market_caps = st.floats(min_value=1e6, max_value=5e12, allow_nan=False, allow_infinity=False)


@SETTINGS
@given(raw=st.lists(market_caps, min_size=1, max_size=12), cap=st.floats(min_value=0.05, max_value=1.0))
def test_capped_weights_sum_to_one_respect_the_cap_and_keep_the_order(raw: list[float], cap: float) -> None:
    names = [f"C{i}" for i in range(len(raw))]
    weights, infeasible = water_fill(normalise(dict(zip(names, raw))), cap)
    assert math.fsum(weights.values()) == pytest.approx(1.0, abs=1e-12)
    if cap * len(raw) < 1:
        assert infeasible
        return
    assert not infeasible
    assert all(weight <= cap for weight in weights.values())
    for a, b in zip(names, names[1:]):
        ra, rb = dict(zip(names, raw))[a], dict(zip(names, raw))[b]
        if ra >= rb:
            assert weights[a] >= weights[b] - 1e-15


@SETTINGS
@given(views=st.lists(
    st.tuples(market_caps, st.floats(min_value=0.97, max_value=1.03), st.floats(min_value=0.5, max_value=1.0),
              st.floats(min_value=0.0, max_value=3.0)),
    min_size=6, max_size=6))
def test_rebalance_weights_are_eligible_sum_to_one_and_respect_the_cap(views) -> None:
    candidates = [CandidateView(symbol, cap, p, liq, sigma) for symbol, (cap, p, liq, sigma) in zip(M.symbols, views)]
    outcome = rebalance(candidates, M)
    if len(outcome.eligible) < M.weights.n_min:
        assert outcome.weights is None
        return
    assert outcome.weights is not None and set(outcome.weights) == set(outcome.eligible)
    assert abs(math.fsum(outcome.weights.values()) - 1) <= 1e-12
    assert all(0 < weight <= M.weights.cap for weight in outcome.weights.values())


@SETTINGS
@given(pairs=st.lists(st.tuples(st.floats(min_value=1e-6, max_value=1.0), st.floats(min_value=-0.2, max_value=0.5)), min_size=1, max_size=8))
def test_syi_lies_between_the_smallest_and_largest_included_ray(pairs) -> None:
    weights = {f"C{i}": w for i, (w, _) in enumerate(pairs)}
    rays = {f"C{i}": r for i, (_, r) in enumerate(pairs)}
    result = aggregate(weights, rays)
    slack = 1e-15 * max(abs(r) for r in rays.values())
    assert min(rays.values()) - slack <= result.syi <= max(rays.values()) + slack
    assert abs(math.fsum(result.renormalised.values()) - 1) <= 1e-12
    assert result.coverage == min(1.0, math.fsum(weights.values()))


SYMBOLS = ("USDT", "USDC", "DAI", "FRAX", "USDP")


@st.composite
def bucket_messages(draw) -> list[tuple[str, object]]:
    """Three minutes of messages; every message of a minute has its own event time."""
    messages: list[tuple[str, object]] = []
    values = st.floats(min_value=0.97, max_value=1.03)
    rates = st.floats(min_value=1.0, max_value=9.0)
    for minute in range(3):
        # Minute 0 measures every coin once (so most runs publish); then random extra messages.
        kinds = [(symbol, kind, draw(values), draw(rates)) for symbol in SYMBOLS for kind in ("price", "book", "pool")] if minute == 0 else []
        kinds += draw(st.lists(
            st.tuples(st.sampled_from(SYMBOLS), st.sampled_from(["price", "book", "pool", "usdt_quote"]), values, rates),
            min_size=1, max_size=12))
        offsets = draw(st.lists(st.integers(min_value=0, max_value=59_999), min_size=len(kinds), max_size=len(kinds), unique=True))
        for (symbol, kind, value, rate), offset in zip(kinds, offsets):
            ms = T0 + minute * MIN + offset
            if kind == "price":
                messages.append(("cc.prices", price(symbol, value, ms, venue="coinbase")))
            elif kind == "usdt_quote" and symbol != "USDT":
                messages.append(("cc.prices", price(symbol, value, ms, venue="binance", quote="USDT")))
            elif kind == "book":
                messages.append(("cc.orderbook", book(symbol, ms, bids=[(value * 0.999, rate * 1e7)], asks=[(value * 1.001, rate * 2e7)])))
            else:
                messages.append(("dl.apy", pool(symbol, rate, ms, pool_id=f"{symbol}-{int(rate)}")))
    return messages


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=bucket_messages(), data=st.data())
def test_results_do_not_depend_on_message_order_within_a_bucket(messages, data) -> None:
    fixed = caps_at(T0 + 10, {s: 2e10 for s in SYMBOLS}) + [("trad.tbill", tbill(4.0, T0 + 20))]
    by_minute: dict[int, list] = {}
    for topic, value in fixed + messages:
        by_minute.setdefault(bucket_end_of(millis(value.event_time)), []).append((topic, value))
    shuffled = [item for minute in sorted(by_minute) for item in data.draw(st.permutations(by_minute[minute]))]
    original = [item for minute in sorted(by_minute) for item in by_minute[minute]]
    buckets_a, values_a = compute_run(positioned(original), M, published)
    buckets_b, values_b = compute_run(positioned(shuffled), M, published)
    assert [dumps(v) for v in values_a] == [dumps(v) for v in values_b]
    assert [[dumps(r) for r in b.rays] for b in buckets_a] == [[dumps(r) for r in b.rays] for b in buckets_b]
    for value in values_a:
        included = [row.ray_decimal for row in value.constituents if row.excluded_reason is None]
        slack = 1e-15 * max(abs(r) for r in included)
        assert min(included) - slack <= value.syi_decimal <= max(included) + slack


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 2), st.integers(0, 50)), max_size=40),
       st.integers(-1, 22))
def test_history_latest_is_the_last_observation_before_t(keys, t) -> None:
    history: History = History()
    for sort_key in keys:
        history.add("k", sort_key, object())
    before = sorted({key for key in keys if key[0] < t})
    latest = history.latest("k", t)
    assert (latest[0] if latest else None) == (before[-1] if before else None)
