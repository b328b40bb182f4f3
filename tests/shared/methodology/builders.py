"""Small synthetic topic messages for the methodology tests (times as `...Z` text)."""

from __future__ import annotations

from syi_shared.models import MarketCap, OrderBook, PoolYield, PriceTick, TBill
from syi_shared.timefmt import format_utc, from_millis, to_millis, parse_utc

T0 = to_millis(parse_utc("2026-11-27T10:00:00.000Z"))  # a whole minute, not 00:00 UTC
MIN = 60_000


def at(ms: int) -> str:
    return format_utc(from_millis(ms))


def price(symbol: str, value: float, ms: int, venue: str = "binance", quote: str = "USD", ingest_ms: int | None = None) -> PriceTick:
    return PriceTick(symbol=symbol, venue=venue, base=symbol, quote=quote, price=value,
                     event_time=at(ms), ingest_time=at(ingest_ms if ingest_ms is not None else ms + 50))


def book(symbol: str, ms: int, bids: list[tuple[float, float]], asks: list[tuple[float, float]],
         venue: str = "binance", quote: str = "USD") -> OrderBook:
    return OrderBook(symbol=symbol, venue=venue, base=symbol, quote=quote, bids=bids, asks=asks,
                     event_time=at(ms), ingest_time=at(ms + 50))


def deep_book(symbol: str, ms: int, depth_usd: float = 60e6, venue: str = "binance") -> OrderBook:
    """A USD book around 1.0 with `depth_usd` inside the band (half each side)."""
    return book(symbol, ms, bids=[(1.0, depth_usd / 2)], asks=[(1.0, depth_usd / 2)], venue=venue)


def pool(symbol: str, apy_pct: float | None, ms: int, pool_id: str | None = None, tvl: float = 100e6,
         project: str = "aave-v3", stablecoin: bool = True, exposure: str = "single") -> PoolYield:
    return PoolYield(pool=pool_id or f"{symbol.lower()}-{project}", project=project, chain="Ethereum", symbol=symbol,
                     tvl_usd=tvl, apy_base_pct=apy_pct, apy_reward_pct=None, stablecoin=stablecoin,
                     exposure=exposure, event_time=at(ms), ingest_time=at(ms + 50))


def mktcap(symbol: str, cap: float, ms: int) -> MarketCap:
    return MarketCap(symbol=symbol, market_cap_usd=cap, price_usd=1.0, source="defillama",
                     event_time=at(ms), ingest_time=at(ms + 50))


def tbill(rate_pct: float, ms: int, basis: str = "discount") -> TBill:
    # 2026-11-25 unless that is after the event date (an observation is known after its date)
    observed = min("2026-11-25", at(ms - 86_400_000)[:10])
    return TBill(series="DTB3", observation_date=observed, rate_pct=rate_pct, basis=basis, source="fred",
                 event_time=at(ms), ingest_time=at(ms))


# Market caps of a healthy phase-1 basket (TUSD below the 1e9 minimum: never eligible).
CAPS = {"USDT": 1.2e11, "USDC": 7.5e10, "DAI": 5e9, "TUSD": 5e8, "FRAX": 1.2e9, "USDP": 1.1e9}


def healthy(symbol: str, ms: int, value: float = 1.0, apy: float = 4.0) -> list[tuple[str, object]]:
    """One minute of a healthy coin: a USD price, a 60 M USD book and one pool, all at `ms`."""
    return [("cc.prices", price(symbol, value, ms)), ("cc.orderbook", deep_book(symbol, ms)), ("dl.apy", pool(symbol, apy, ms))]


def caps_at(ms: int, caps: dict[str, float] | None = None) -> list[tuple[str, object]]:
    return [("ex.mktcap", mktcap(symbol, cap, ms)) for symbol, cap in (caps or CAPS).items()]


def methodology_with(**sections: dict[str, object]):
    """The default methodology with some keys replaced, e.g. methodology_with(weights={"n_min": 2})."""
    import tomllib

    from syi_shared.methodology.params import DEFAULT_PATH, parse_methodology

    document = tomllib.loads(DEFAULT_PATH.read_text())
    for section, values in sections.items():
        if isinstance(values, dict):
            document[section].update(values)
        else:
            document[section] = values
    return parse_methodology(document, "test")


def published(bucket_end_ms: int) -> str:
    return at(bucket_end_ms + 1_000)


def positioned(messages: list[tuple[str, object]]) -> list[tuple[str, object, tuple[int, int]]]:
    """Tape positions: (0, line number)."""
    return [(topic, value, (0, line)) for line, (topic, value) in enumerate(messages, start=1)]
