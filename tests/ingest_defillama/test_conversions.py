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
