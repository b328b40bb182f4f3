"""DefiLlama and CryptoCompare records → dl.apy, ex.mktcap and cc.prices models.

Neither DefiLlama body carries a timestamp, so event_time is the time the response
arrived (one time for the whole poll). CryptoCompare gives LASTUPDATE (unix seconds): that
is its event_time, never later than receipt. A value outside the plausibility bounds
(docs/topics.md) fails to build here with an `out_of_range:` reason; the worker logs,
counts and skips it.
"""

from __future__ import annotations

import math
from typing import Any

from syi_shared.models import MarketCap, PoolYield, PriceTick
from syi_shared.timefmt import format_utc, from_millis, parse_utc, to_millis


def keeps_pool(symbols: set[str]) -> Any:
    """The /pools filter: stablecoin, single exposure, symbol exactly one of ours (pool
    symbols are not identifiers: "USDC.E" or "USDC-USDT" are other things)."""

    def keep(pool: dict[str, Any]) -> bool:
        return pool.get("stablecoin") is True and pool.get("exposure") == "single" and pool.get("symbol") in symbols

    return keep


def pool_yield(pool: dict[str, Any], received: str) -> PoolYield:
    base, reward, apy = pool.get("apyBase"), pool.get("apyReward"), pool.get("apy")
    if apy is None and (base is not None or reward is not None):
        apy = (base or 0.0) + (reward or 0.0)  # DefiLlama's own definition of apy
    return PoolYield(
        pool=pool["pool"], project=pool["project"], chain=pool["chain"], symbol=pool["symbol"],
        tvl_usd=pool["tvlUsd"], apy_base_pct=base, apy_reward_pct=reward, apy_pct=apy,
        stablecoin=pool["stablecoin"], exposure=pool["exposure"], event_time=received, ingest_time=received,
    )


def pick_assets(assets: list[dict[str, Any]], symbols: set[str]) -> dict[str, dict[str, Any]]:
    """symbol -> its USD-pegged asset. Symbols are not unique on DefiLlama: the list comes
    sorted by circulating supply, so the first (largest) one with a symbol wins."""
    picked: dict[str, dict[str, Any]] = {}
    for asset in assets:
        symbol = asset.get("symbol") if isinstance(asset, dict) else None
        if symbol in symbols and symbol not in picked and asset.get("pegType") == "peggedUSD":
            picked[symbol] = asset
    return picked


def usd_price(asset: dict[str, Any]) -> float | None:
    """`price` may be null or absent (no gecko id): no price then, not an error."""
    price = asset.get("price")
    if isinstance(price, (int, float)) and not isinstance(price, bool) and price > 0:
        return float(price)
    return None


def market_cap(symbol: str, asset: dict[str, Any], received: str) -> MarketCap:
    return MarketCap(symbol=symbol, market_cap_usd=asset["circulating"]["peggedUSD"], price_usd=usd_price(asset),
                     source="defillama", event_time=received, ingest_time=received)


def usd_tick(symbol: str, venue: str, price: float, event_time: str, received: str) -> PriceTick:
    return PriceTick(symbol=symbol, venue=venue, base=symbol, quote="USD", bid=None, ask=None, price=price,
                     event_time=event_time, ingest_time=received)


def cryptocompare_tick(symbol: str, quote: dict[str, Any], received: str) -> PriceTick:
    last_update = quote["LASTUPDATE"]
    if not isinstance(last_update, (int, float)) or isinstance(last_update, bool):
        raise TypeError(f"LASTUPDATE is {type(last_update).__name__}, expected unix seconds")
    if not math.isfinite(last_update):
        raise ValueError(f"LASTUPDATE is {last_update!r}, expected unix seconds")
    received_ms = to_millis(parse_utc(received))
    event_ms = min(int(last_update * 1000), received_ms)  # a clock ahead of ours must not date ticks in the future
    # An absurdly old LASTUPDATE stops at the epoch (a datetime cannot go much lower) and
    # the model then refuses it as out_of_range, like any time before 2009-01-03.
    return usd_tick(symbol, "cryptocompare", quote["PRICE"], format_utc(from_millis(max(event_ms, 0))), received)
