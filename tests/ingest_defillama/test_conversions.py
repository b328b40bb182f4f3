"""DefiLlama / CryptoCompare records → topic models, on the recorded fixtures."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ingest_defillama.conversions import (
    cryptocompare_tick,
    keeps_pool,
    market_cap,
    pick_assets,
    pool_yield,
    usd_price,
)
from ingest_defillama.settings import CANDIDATES
from tests.replay_server.harness import snapshot

NOW = "2026-11-27T10:00:03.120Z"


def test_pool_filter_keeps_single_exposure_stablecoin_pools_of_our_symbols() -> None:
    pools = snapshot("pools", 0)["data"]
    kept = [p for p in pools if keeps_pool(set(CANDIDATES))(p)]
    assert kept and {p["symbol"] for p in kept} == set(CANDIDATES)
    assert all(p["stablecoin"] is True and p["exposure"] == "single" for p in kept)
    dropped_symbols = {p["symbol"] for p in pools if p not in kept}
    assert {"USDC-USDT", "STETH", "USDC.E", "SUSDE"} <= dropped_symbols  # LP, non-stable, look-alikes


def test_pool_yield_carries_the_fields_and_fills_a_missing_apy() -> None:
    pool = {"chain": "Ethereum", "project": "morpho-blue", "symbol": "USDC", "tvlUsd": 48_000_000, "apyBase": None,
            "apyReward": 5.1, "apy": None, "pool": "p-1", "stablecoin": True, "exposure": "single"}
    value = pool_yield(pool, NOW)
    assert value.model_dump() == {
        "schema_version": 1, "event_time": NOW, "ingest_time": NOW, "pool": "p-1", "project": "morpho-blue",
        "chain": "Ethereum", "symbol": "USDC", "tvl_usd": 48_000_000.0, "apy_base_pct": None,
        "apy_reward_pct": 5.1, "apy_pct": 5.1, "stablecoin": True, "exposure": "single"}
    assert value.key() == "p-1"
    with pytest.raises(ValidationError, match="tvl_usd"):
        pool_yield({**pool, "tvlUsd": None}, NOW)


def test_stablecoins_pick_the_largest_usd_asset_per_symbol_and_tolerate_null_prices() -> None:
    assets = [
        {"symbol": "USDC", "pegType": "peggedUSD", "circulating": {"peggedUSD": 7.0e10}, "price": 0.9999},
        {"symbol": "USDC", "pegType": "peggedUSD", "circulating": {"peggedUSD": 1.0e6}, "price": 2.0},
        {"symbol": "EURC", "pegType": "peggedEUR", "circulating": {"peggedEUR": 2.0e8}, "price": 1.16},
        {"symbol": "FRAX", "pegType": "peggedUSD", "circulating": {"peggedUSD": 3.2e8}, "price": None,
         "circulatingPrevDay": 0},
    ]
    picked = pick_assets(assets, {"USDC", "FRAX", "EURC"})
    assert picked == {"USDC": assets[0], "FRAX": assets[3]}
    assert usd_price(assets[3]) is None and usd_price({"price": 0}) is None and usd_price({}) is None
    cap = market_cap("FRAX", assets[3], NOW)
    assert (cap.market_cap_usd, cap.price_usd, cap.source, cap.key()) == (3.2e8, None, "defillama", "FRAX")


def test_cryptocompare_event_time_is_lastupdate_but_never_after_receipt() -> None:
    quote = {"PRICE": 1.0003, "LASTUPDATE": 1795773600}  # 2026-11-27T10:00:00Z
    tick = cryptocompare_tick("USDT", quote, NOW)
    assert (tick.venue, tick.quote, tick.bid, tick.ask, tick.price) == ("cryptocompare", "USD", None, None, 1.0003)
    assert tick.event_time == "2026-11-27T10:00:00.000Z" and tick.ingest_time == NOW
    future = cryptocompare_tick("USDT", {**quote, "LASTUPDATE": 1795773700}, NOW)
    assert future.event_time == NOW
    with pytest.raises(TypeError):
        cryptocompare_tick("USDT", {**quote, "LASTUPDATE": "soon"}, NOW)


def reason_of(build) -> str:
    from syi_shared.models import validation_reason

    with pytest.raises(ValidationError) as info:
        build()
    return validation_reason(info.value)


POOL = {"chain": "Ethereum", "project": "aave-v3", "symbol": "USDC", "tvlUsd": 48_000_000, "apyBase": 4.1,
        "apyReward": None, "apy": None, "pool": "p-1", "stablecoin": True, "exposure": "single"}


def test_source_values_outside_the_bounds_fail_with_out_of_range_reasons() -> None:
    assert reason_of(lambda: pool_yield({**POOL, "apyBase": 1e6}, NOW)).startswith(
        "out_of_range: apy_base_pct: 1000000.0 is above 10000")
    assert reason_of(lambda: pool_yield({**POOL, "tvlUsd": 2e13}, NOW)) == (
        "out_of_range: tvl_usd: 20000000000000.0 is above 1e13")
    asset = {"symbol": "USDC", "pegType": "peggedUSD", "circulating": {"peggedUSD": 1e308}, "price": 1.0}
    assert reason_of(lambda: market_cap("USDC", asset, NOW)) == "out_of_range: market_cap_usd: 1e+308 is above 1e13"
    assert reason_of(lambda: market_cap("USDC", {**asset, "circulating": {"peggedUSD": 7e10}, "price": 5e6}, NOW)) == (
        "out_of_range: price_usd: 5000000.0 is above 1e6")


def test_source_strings_for_numbers_are_not_coerced() -> None:
    assert reason_of(lambda: pool_yield({**POOL, "tvlUsd": "48000000"}, NOW)) == (
        "tvl_usd: Input should be a valid number, not a string")
    assert reason_of(lambda: cryptocompare_tick("USDT", {"PRICE": "1.0003", "LASTUPDATE": 1795773600}, NOW)) == (
        "price: Input should be a valid number, not a string")


@pytest.mark.parametrize("last_update", [0, -1e300, 1230767999])  # 1970, far before, 2008-12-31T23:59:59Z
def test_cryptocompare_lastupdate_before_2009_is_out_of_range_not_a_crash(last_update: float) -> None:
    assert reason_of(lambda: cryptocompare_tick("USDT", {"PRICE": 1.0, "LASTUPDATE": last_update}, NOW)).startswith(
        "out_of_range: event_time: ")


def test_cryptocompare_lastupdate_far_ahead_is_dated_at_receipt_and_nan_is_refused() -> None:
    assert cryptocompare_tick("USDT", {"PRICE": 1.0, "LASTUPDATE": 1e300}, NOW).event_time == NOW
    with pytest.raises(ValueError, match="LASTUPDATE"):
        cryptocompare_tick("USDT", {"PRICE": 1.0, "LASTUPDATE": float("nan")}, NOW)
