"""Every formula of docs/methodology.md with hand-worked numbers (pure functions, no engine)."""

from __future__ import annotations

import math

import pytest

from syi_shared.methodology.apy import effective_apy, mad_keep, pool_counts
from syi_shared.methodology.index import aggregate, exclusion_reason, status
from syi_shared.methodology.liquidity import book_depth, liquidity_score, measures
from syi_shared.methodology.params import load_methodology
from syi_shared.methodology.peg import dev_bps, huber, peg_score, sigma_peg_pct
from syi_shared.methodology.prices import VenueQuote, is_fresh, symbol_price, to_usd, usd_reference, usd_references
from syi_shared.methodology.ray import ray, s_worst
from syi_shared.methodology.stats import median
from syi_shared.methodology.tbill import discount_to_apy, risk_premium
from syi_shared.methodology.weights import CandidateView, is_eligible, normalise, raw_weight, rebalance, water_fill
from syi_shared.models import RayRecord
from tests.shared.methodology.builders import T0, pool

M = load_methodology()


# §0 freshness -------------------------------------------------------------------------

def test_fresh_at_exactly_max_age_and_stale_one_millisecond_later() -> None:
    assert is_fresh(T0 + 600_000, T0, 600_000)
    assert not is_fresh(T0 + 600_001, T0, 600_000)


# §2.1–2.3 prices ----------------------------------------------------------------------

def test_median_odd_and_even_counts() -> None:
    assert median([1.002, 0.999, 1.0]) == 1.0
    assert median([1.004, 0.998, 1.001, 1.0]) == (1.0 + 1.001) / 2


def test_usd_conversion_through_a_stablecoin_quote() -> None:
    # USDT's USD price comes from its USD-quoted venues only: median(1.001, 1.003) = 1.002;
    # its USDC-quoted venue does not count.
    fresh = {
        "USDT": [VenueQuote("kraken", "USD", 1.001, T0), VenueQuote("coinbase", "USD", 1.003, T0),
                 VenueQuote("binance", "USDC", 0.5, T0)],
        "USDC": [VenueQuote("binance", "USDT", 0.9998, T0), VenueQuote("coinbase", "USD", 1.0001, T0)],
    }
    references = usd_references(fresh)
    assert references["USDT"] == pytest.approx(1.002, abs=1e-15)
    assert usd_reference(fresh["USDC"]) == 1.0001
    price = symbol_price(fresh["USDC"], references)
    # USDCUSDT 0.9998 × 1.002 = 1.0017996 USD; median with 1.0001 = (1.0017996 + 1.0001) / 2.
    assert price.price == pytest.approx((0.9998 * 1.002 + 1.0001) / 2, abs=1e-15)
    assert price.price == pytest.approx(1.0009498, abs=1e-12)
    assert (price.venues, price.assumed) == (2, False)


def test_quote_without_a_usd_price_is_assumed_one_and_flagged() -> None:
    price = symbol_price([VenueQuote("binance", "FDUSD", 0.9995, T0)], {})
    assert price.price == 0.9995 and price.assumed
    assert to_usd(100.0, "USD", {}) == (100.0, False)
    assert to_usd(100.0, "USDT", {"USDT": 0.999}) == (99.9, False)
    assert symbol_price([], {}).price is None


# §2.4–2.6 peg --------------------------------------------------------------------------

def test_huber_loss_quadratic_inside_delta_linear_outside() -> None:
    assert huber(5, 10) == 12.5
    assert huber(-30, 10) == 250.0  # 10 · (30 − 5)
    assert huber(10, 10) == 50.0  # both branches agree at the edge
    assert huber(200, 10) == 1950.0  # the zero-score normaliser h(200)


def test_peg_score_hand_worked() -> None:
    # losses 12.5 and 250 → L = 131.25 → 1 − 131.25 / 1950
    assert peg_score([5.0, -30.0], 10, 200) == pytest.approx(1 - 131.25 / 1950, abs=1e-15)
    assert peg_score([5.0, -30.0], 10, 200) == pytest.approx(0.9326923076923077, abs=1e-15)
    assert peg_score([200.0], 10, 200) == 0.0  # a sustained 2 % depeg scores 0
    assert peg_score([-500.0], 10, 200) == 0.0  # clipped, never negative
    assert peg_score([0.0], 10, 200) == 1.0
    assert dev_bps(1.0015) == pytest.approx(15.0, abs=1e-9)


def test_sigma_is_population_std_of_percent_deviation() -> None:
    # 100·(p − 1) = 0.1, −0.1, 0, 0.2 → mean 0.05, variance 0.0125
    assert sigma_peg_pct([1.001, 0.999, 1.0, 1.002]) == pytest.approx(math.sqrt(0.0125), abs=1e-12)
    assert sigma_peg_pct([1.001, 0.999, 1.0, 1.002]) == pytest.approx(0.11180339887498948, abs=1e-12)
    assert sigma_peg_pct([1.01]) == 0.0  # fewer than two prices
    assert sigma_peg_pct([]) == 0.0


# §3 liquidity -------------------------------------------------------------------------

def test_book_depth_counts_levels_within_50_bps_of_mid() -> None:
    bids = [(0.999, 1e6), (0.996, 2e6), (0.99, 5e6)]
    asks = [(1.001, 1e6), (1.004, 3e6), (1.01, 5e6)]
    # mid 1.0, band [0.995, 1.005]: 0.999e6 + 1.992e6 + 1.001e6 + 3.012e6
    assert book_depth(bids, asks, 50) == pytest.approx(7_004_000.0, abs=1e-6)
    assert liquidity_score(7_004_000.0, 50e6) == pytest.approx(math.log10(8.004) / math.log10(51), abs=1e-15)
    assert liquidity_score(7_004_000.0, 50e6) == pytest.approx(0.5290014387744644, abs=1e-12)


def test_book_depth_level_exactly_at_band_edge_counts() -> None:
    bid, ask = 0.9999, 1.0003
    mid = (bid + ask) / 2
    floor, ceiling = mid * (1 - 50 / 10_000), mid * (1 + 50 / 10_000)
    bids = [(bid, 1.0), (floor, 10.0), (math.nextafter(floor, 0), 1000.0)]
    asks = [(ask, 1.0), (ceiling, 100.0), (math.nextafter(ceiling, 2), 1000.0)]
    assert book_depth(bids, asks, 50) == math.fsum([bid, floor * 10, ask, ceiling * 100])


def test_book_with_an_empty_side_is_no_snapshot() -> None:
    assert book_depth([(0.999, 1.0)], [], 50) is None
    assert book_depth([], [(1.001, 1.0)], 50) is None


def test_liquidity_score_reference_depth_scores_one_and_clips() -> None:
    assert liquidity_score(50e6, 50e6) == 1.0
    assert liquidity_score(500e6, 50e6) == 1.0
    assert liquidity_score(0.0, 50e6) == 0.0


def test_book_measures_its_base_and_a_candidate_quote() -> None:
    candidates = {"USDT", "USDC"}
    assert measures("USDC", "USDT", "USDC", candidates)
    assert measures("USDC", "USDT", "USDT", candidates)
    assert not measures("USDC", "TRY", "TRY", candidates)
    assert not measures("USDC", "USDT", "DAI", candidates)


# §4 APY -------------------------------------------------------------------------------

def test_mad_rule_drops_the_outlier_pool() -> None:
    rates = [4.0, 4.2, 4.1, 4.3, 12.0]
    # median 4.2; |x − m| = .2, 0, .1, .1, 7.8 → MAD 0.1; limit 3 · 1.4826 · 0.1 = 0.44478
    assert mad_keep(rates, 3.0) == [True, True, True, True, False]
    tvls = [100e6, 300e6, 100e6, 100e6, 1000e6]
    result = effective_apy(list(zip(tvls, rates)), M.apy)
    # (400 + 1260 + 410 + 430) / 600 = 4.1666…% → 0.041666…
    assert result.value == pytest.approx(2500 / 600 / 100, abs=1e-15)
    assert (result.pools_used, result.pools_dropped, result.high, result.capped) == (4, 1, False, False)


def test_mad_zero_keeps_every_pool() -> None:
    assert mad_keep([4.0, 4.0, 4.0, 9.0], 3.0) == [True] * 4
    assert effective_apy([(1.0, 4.0), (1.0, 4.0), (1.0, 4.0), (1.0, 9.0)], M.apy).value == pytest.approx(0.0525, abs=1e-15)


def test_mad_limit_is_inclusive() -> None:
    # sorted 1, 2, 2, 3, x → m = 2; |x − m| = 1, 0, 0, 1, … → MAD = 1; limit 3 · 1.4826 · 1
    limit = 3 * 1.4826 * 1.0
    edge = 2 + limit
    assert abs(edge - 2) == limit  # the float sits exactly on the limit
    assert mad_keep([1.0, 2.0, 3.0, 2.0, edge], 3.0) == [True] * 5
    assert mad_keep([1.0, 2.0, 3.0, 2.0, math.nextafter(edge, 10)], 3.0) == [True] * 4 + [False]


def test_apy_capped_at_half_and_flagged_high() -> None:
    capped = effective_apy([(1e8, 60.0)], M.apy)
    assert (capped.value, capped.high, capped.capped) == (0.5, True, True)
    high = effective_apy([(1e8, 30.0)], M.apy)
    assert (high.value, high.high, high.capped) == (pytest.approx(0.3, abs=1e-15), True, False)
    assert effective_apy([], M.apy).value is None


def test_pool_filters() -> None:
    assert pool_counts(pool("USDC", 4.0, T0), "USDC", M.apy)
    assert pool_counts(pool("USDC", 4.0, T0, tvl=10_000_000), "USDC", M.apy)  # at the minimum
    assert not pool_counts(pool("USDC", 4.0, T0, tvl=9_999_999), "USDC", M.apy)
    assert not pool_counts(pool("USDC", None, T0), "USDC", M.apy)
    assert not pool_counts(pool("USDC", 4.0, T0, project="curve-dex"), "USDC", M.apy)
    assert not pool_counts(pool("USDC", 4.0, T0, stablecoin=False), "USDC", M.apy)
    assert not pool_counts(pool("USDC", 4.0, T0, exposure="multi"), "USDC", M.apy)
    assert not pool_counts(pool("USDC-USDT", 4.0, T0), "USDC", M.apy)


# §5 RAY -------------------------------------------------------------------------------

def test_ray_vector_of_the_methodology() -> None:
    value = ray(0.05, 0.9, 2.0)
    assert value == pytest.approx(0.05 * math.exp(-0.2), abs=1e-15)
    assert abs(value - 0.0409365) < 5e-8
    assert s_worst(0.99, 0.95, 0.9) == 0.9
    assert s_worst(0.6, 0.95, 0.9) == 0.6
    assert s_worst(None, 0.95, 0.9) is None
    assert ray(0.05, 1.0, 2.0) == 0.05


# §6 weights ---------------------------------------------------------------------------

def _view(symbol: str, cap: float | None = 2e9, price: float | None = 1.0, liquidity: float | None = 0.9, sigma: float | None = 0.0) -> CandidateView:
    return CandidateView(symbol, cap, price, liquidity, sigma)


def test_eligibility_bounds_are_inclusive() -> None:
    rules = M.eligibility
    assert is_eligible(_view("A", cap=1e9, price=0.98, liquidity=0.7), rules)
    assert is_eligible(_view("A", price=1.02), rules)
    assert not is_eligible(_view("A", cap=999_999_999.0), rules)
    assert not is_eligible(_view("A", price=0.9799), rules)
    assert not is_eligible(_view("A", price=1.0201), rules)
    assert not is_eligible(_view("A", liquidity=0.6999), rules)
    assert not is_eligible(_view("A", cap=None), rules)
    assert not is_eligible(_view("A", price=None), rules)
    assert not is_eligible(_view("A", liquidity=None), rules)


def test_raw_weight_discounts_compliance_and_volatility() -> None:
    assert raw_weight(1e10, False, 0.75, 0.1) == pytest.approx(1e10 / 1.01, rel=1e-15)
    assert raw_weight(1e10, True, 0.75, 0.0) == 7.5e9


def test_water_filling_single_round() -> None:
    weights, infeasible = water_fill({"A": 0.6, "B": 0.3, "C": 0.1}, 0.45)
    assert not infeasible
    assert weights["A"] == 0.45
    assert weights["B"] == pytest.approx(0.4125, abs=1e-15)  # 0.3 · 0.55 / 0.4
    assert weights["C"] == pytest.approx(0.1375, abs=1e-15)


def test_water_filling_cascades_until_no_weight_exceeds_the_cap() -> None:
    # Capping A lifts B to 0.462 > 0.45, so B is capped in a second round.
    weights, infeasible = water_fill({"A": 0.5, "B": 0.42, "C": 0.04, "D": 0.04}, 0.45)
    assert not infeasible
    assert weights == {"A": 0.45, "B": 0.45, "C": pytest.approx(0.05, abs=1e-15), "D": pytest.approx(0.05, abs=1e-15)}
    assert max(weights.values()) <= 0.45
    assert math.fsum(weights.values()) == pytest.approx(1.0, abs=1e-15)


def test_water_filling_infeasible_is_flagged_and_skipped() -> None:
    weights, infeasible = water_fill({"A": 0.7, "B": 0.3}, 0.45)
    assert infeasible and weights == {"A": 0.7, "B": 0.3}


def test_rebalance_needs_n_min_eligible() -> None:
    too_few = rebalance([_view("USDT"), _view("USDC"), _view("DAI", price=0.9)], M)
    assert too_few.weights is None and too_few.eligible == ("USDT", "USDC")
    done = rebalance([_view("USDT", cap=6e10), _view("USDC", cap=3e10), _view("DAI", cap=1e10)], M)
    assert done.weights == {"USDT": 0.45, "USDC": pytest.approx(0.4125, abs=1e-15), "DAI": pytest.approx(0.1375, abs=1e-15)}
    assert normalise({"A": 3.0, "B": 1.0}) == {"A": 0.75, "B": 0.25}


# §7 index -----------------------------------------------------------------------------

def test_aggregation_vector_of_the_methodology() -> None:
    weights = {s: w / 100 for s, w in zip("ABCDEF", [72.5, 21.8, 4.4, 0.4, 0.7, 0.2])}
    rays = {s: r / 100 for s, r in zip("ABCDEF", [4.20, 4.50, 7.59, 15.02, 6.80, 3.42])}
    result = aggregate(weights, rays)
    assert result.syi * 100 == pytest.approx(4.47448, abs=1e-9)
    assert result.coverage == pytest.approx(1.0, abs=1e-15)
    assert result.hhi == pytest.approx(10_000 * sum((w / 100) ** 2 for w in [72.5, 21.8, 4.4, 0.4, 0.7, 0.2]), abs=1e-9)


def test_renormalisation_over_the_included_set() -> None:
    result = aggregate({"A": 0.45, "B": 0.15}, {"A": 0.04, "B": 0.08})
    assert result.coverage == pytest.approx(0.6, abs=1e-15)
    assert result.renormalised == {"A": pytest.approx(0.75, abs=1e-15), "B": pytest.approx(0.25, abs=1e-15)}
    assert result.syi == pytest.approx(0.05, abs=1e-15)
    assert result.hhi == pytest.approx(6250.0, abs=1e-9)


def test_status_degraded_below_n_min_or_half_coverage() -> None:
    assert status(3, 0.5, 3) == "ok"
    assert status(2, 0.9, 3) == "degraded"
    assert status(4, 0.4999, 3) == "degraded"


def _ray_record(**overrides: object) -> RayRecord:
    fields = dict(symbol="USDC", bucket_end="2026-11-27T10:01:00.000Z", price_usd=1.0, dev_bps=0.0, peg_score=1.0,
                  sigma_peg_pct=0.0, depth_usd=1e8, liquidity_score=1.0, counterparty_score=0.9,
                  apy_eff_decimal=0.04, s_worst=0.9, ray_decimal=0.033, flags=[], methodology_version="3.0.0")
    fields.update(overrides)
    return RayRecord.model_validate(fields)


def test_exclusion_reasons_in_order() -> None:
    assert exclusion_reason(_ray_record()) is None
    stale = dict(price_usd=None, dev_bps=None, peg_score=None, s_worst=None, ray_decimal=None)
    assert exclusion_reason(_ray_record(**stale, apy_eff_decimal=None)) == "stale_price"
    assert exclusion_reason(_ray_record(depth_usd=None, liquidity_score=None, s_worst=None, ray_decimal=None, apy_eff_decimal=None)) == "stale_book"
    assert exclusion_reason(_ray_record(apy_eff_decimal=None, ray_decimal=None)) == "no_apy"
    assert exclusion_reason(None) == "no_ray"


# §7.5 T-bill --------------------------------------------------------------------------

def test_tbill_discount_to_apy_hand_worked() -> None:
    # d = 4.12 %: P = 1 − 0.0412 · 91/360 = 0.98958555…, (1/P)^(365/91) − 1
    price = 1 - 0.0412 * 91 / 360
    assert discount_to_apy(0.0412) == pytest.approx((1 / price) ** (365 / 91) - 1, abs=1e-15)
    assert discount_to_apy(0.0412) == pytest.approx(0.0428853655358, abs=1e-12)
    assert discount_to_apy(0.0) == 0.0
    assert risk_premium(0.05, 0.0428853655358) == pytest.approx(0.0071146344642, abs=1e-12)
    assert risk_premium(0.05, None) is None
