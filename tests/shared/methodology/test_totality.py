"""The methodology is total on the validated domain (docs/topics.md, "Plausibility bounds").

Whatever the input topics hold within their bounds, extremes included, both engines close
every bucket without an exception and every number they publish is finite. The inputs mix
one healthy minute (so the index publishes and rebalances) with values drawn from the
whole bounded domain: prices 1e-300..1e6 in USD and in other stablecoins, books up to
1000 levels a side with quantities up to 1e15, market caps and TVL 0..1e13, APY
-100..10 000 %, T-bill rates -5..50 %.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from syi_shared import bounds
from syi_shared.methodology import compute_run, load_methodology
from syi_shared.methodology.tbill import discount_to_apy
from syi_shared.models import MarketCap, OrderBook, PoolYield, PriceTick, TBill
from tests.shared.methodology.builders import MIN, T0, at, caps_at, healthy, mktcap, pool, positioned, price, published, tbill

M = load_methodology()
SYMBOLS = M.symbols
QUOTES = ("USD", "USDT", "USDC", "DAI")
VENUES = ("binance", "coinbase", "kraken")
MINUTES = 3


def bounded(low: float, high: float, extremes: tuple[float, ...]) -> st.SearchStrategy[float]:
    """Floats of [low, high] with the edges and the awkward values drawn often."""
    return st.one_of(
        st.sampled_from(extremes),
        st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False),
    )


SMALLEST = 5e-324
prices = st.one_of(
    bounded(1e-300, bounds.PRICE_MAX, (1e-300, SMALLEST, 1e-12, 0.5, 0.98, 1.0, 1.02, 2.0, bounds.PRICE_MAX)),
    st.floats(min_value=0.97, max_value=1.03),  # inside the peg band: eligible, included
).filter(lambda x: x > 0)
quantities = bounded(0.0, bounds.QUANTITY_MAX, (0.0, SMALLEST, 1.0, 1e7, bounds.QUANTITY_MAX))
amounts = bounded(0.0, bounds.USD_AMOUNT_MAX, (0.0, SMALLEST, 1e7, 1e9, 2e10, bounds.USD_AMOUNT_MAX))
apys = bounded(bounds.APY_PCT_MIN, bounds.APY_PCT_MAX, (bounds.APY_PCT_MIN, -1.0, 0.0, 4.0, 25.0, bounds.APY_PCT_MAX))
rates = bounded(bounds.RATE_PCT_MIN, bounds.RATE_PCT_MAX, (bounds.RATE_PCT_MIN, 0.0, 4.12, bounds.RATE_PCT_MAX))
offsets = st.integers(min_value=0, max_value=MINUTES * MIN - 1)


@st.composite
def levels(draw: Any, descending: bool) -> list[tuple[float, float]]:
    """0-5 drawn levels, sometimes padded with copies of the last one up to 1000 a side."""
    drawn = draw(st.lists(st.tuples(prices, quantities), max_size=5))
    drawn.sort(key=lambda level: level[0], reverse=descending)
    if drawn and draw(st.booleans()):
        drawn += [drawn[-1]] * (bounds.MAX_LEVELS - len(drawn))
    return drawn


@st.composite
def message(draw: Any) -> tuple[str, object]:
    kind = draw(st.sampled_from(("price", "book", "pool", "cap", "tbill")))
    event_ms = T0 + draw(offsets)
    times = {"event_time": at(event_ms), "ingest_time": at(event_ms + draw(st.integers(-5_000, 60_000)))}
    symbol = draw(st.sampled_from(SYMBOLS))
    if kind == "price":
        quote, bid_ask = draw(st.sampled_from(QUOTES)), draw(st.booleans())
        price = draw(prices)
        return "cc.prices", PriceTick(symbol=symbol, venue=draw(st.sampled_from(VENUES)), base=symbol, quote=quote,
                                      bid=price if bid_ask else None, ask=price if bid_ask else None, price=price, **times)
    if kind == "book":
        return "cc.orderbook", OrderBook(symbol=symbol, venue=draw(st.sampled_from(VENUES)), base=symbol,
                                         quote=draw(st.sampled_from(QUOTES)), bids=draw(levels(True)),
                                         asks=draw(levels(False)), **times)
    if kind == "pool":
        return "dl.apy", PoolYield(pool=f"{symbol}-{draw(st.integers(0, 3))}", project=draw(st.sampled_from(M.apy.projects)),
                                   chain="Ethereum", symbol=symbol, tvl_usd=draw(amounts),
                                   apy_base_pct=draw(st.one_of(st.none(), apys)), apy_reward_pct=draw(st.one_of(st.none(), apys)),
                                   stablecoin=True, exposure="single", **times)
    if kind == "cap":
        return "ex.mktcap", MarketCap(symbol=symbol, market_cap_usd=draw(amounts), price_usd=draw(st.one_of(st.none(), prices)),
                                      source="defillama", **times)
    return "trad.tbill", TBill(series="DTB3", observation_date=times["event_time"][:10], rate_pct=draw(rates),
                               basis="discount", source="fred", **times)


def non_finite(value: Any, path: str = "") -> list[str]:
    """Paths of every NaN or infinite number in a dumped record."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [path]
    if isinstance(value, dict):
        return [bad for key, item in value.items() for bad in non_finite(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [bad for index, item in enumerate(value) for bad in non_finite(item, f"{path}[{index}]")]
    return []


def _extreme_book(ms: int, quote: str = "USD") -> OrderBook:
    full = [(bounds.PRICE_MAX, bounds.QUANTITY_MAX)] * bounds.MAX_LEVELS
    return OrderBook(symbol="USDC", venue="kraken", base="USDC", quote=quote, bids=full, asks=full,
                     event_time=at(ms), ingest_time=at(ms))


# The corners found by hand, checked on every run whatever hypothesis draws.
CORNERS = {
    # a tiny USDC price in USDT times a tiny USDT price in USD underflows to 0
    "usd_underflow": [("cc.prices", price("USDT", 1e-300, T0 + MIN + 3)),
                      ("cc.prices", price("USDC", 1e-300, T0 + MIN + 4, quote="USDT"))],
    "largest_books": [("cc.orderbook", _extreme_book(T0 + MIN + 5)), ("cc.prices", price("USDT", bounds.PRICE_MAX, T0 + MIN + 6)),
                      ("cc.orderbook", _extreme_book(T0 + MIN + 7, quote="USDT"))],
    "largest_caps": [("ex.mktcap", mktcap(symbol, bounds.USD_AMOUNT_MAX, T0 + MIN + 8)) for symbol in SYMBOLS],
    "tbill_highest": [("trad.tbill", tbill(bounds.RATE_PCT_MAX, T0 + MIN + 9))],
    "tbill_lowest": [("trad.tbill", tbill(bounds.RATE_PCT_MIN, T0 + MIN + 9))],
    "apy_extremes": [("dl.apy", pool("USDC", bounds.APY_PCT_MAX, T0 + MIN + 10, tvl=bounds.USD_AMOUNT_MAX)),
                     ("dl.apy", pool("DAI", bounds.APY_PCT_MIN, T0 + MIN + 10, tvl=bounds.USD_AMOUNT_MAX))],
    "peg_far_off": [("cc.prices", price(symbol, bounds.PRICE_MAX, T0 + MIN + 11)) for symbol in SYMBOLS],
}


def with_corners(test: Any) -> Any:
    for corner in CORNERS.values():
        test = example(extra=corner)(test)
    return test


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@with_corners
@given(extra=st.lists(message(), min_size=1, max_size=30))
def test_engines_are_total_and_finite_on_the_bounded_domain(extra: list[tuple[str, object]]) -> None:
    # a healthy first minute (the index rebalances and publishes) and a tick in the last one
    base = caps_at(T0 + 1) + [m for symbol in SYMBOLS for m in healthy(symbol, T0 + 2)]
    base += healthy("USDT", T0 + MINUTES * MIN - 1)[:1]
    ordered = sorted(base + extra, key=lambda item: item[1].event_time)  # type: ignore[attr-defined]
    ray_buckets, values = compute_run(positioned(ordered), M, published)

    assert len(ray_buckets) == MINUTES
    for bucket in ray_buckets:
        for record in (*bucket.peg, *bucket.liquidity, *bucket.rays):
            assert non_finite(record.model_dump()) == [], record
    for value in values:
        assert non_finite(value.model_dump()) == [], value
        assert 0.0 <= value.coverage <= 1.0 and value.hhi >= 0.0


@given(rate_pct=st.floats(min_value=bounds.RATE_PCT_MIN, max_value=bounds.RATE_PCT_MAX))
def test_tbill_apy_is_finite_and_rises_with_the_rate_on_the_bounded_domain(rate_pct: float) -> None:
    apy = discount_to_apy(rate_pct / 100)
    assert isinstance(apy, float) and math.isfinite(apy)
    assert discount_to_apy(bounds.RATE_PCT_MIN / 100) <= apy <= discount_to_apy(bounds.RATE_PCT_MAX / 100)


@pytest.mark.parametrize("discount", [360 / 91, 1e306, math.inf])
def test_tbill_discount_without_an_apy_is_refused_not_complex(discount: float) -> None:
    with pytest.raises(ValueError, match="no APY"):
        discount_to_apy(discount)
