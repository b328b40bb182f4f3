"""Binance payloads → cc.prices / cc.orderbook models.

Binance sends numbers as strings: they go through Decimal (the mid too) and become floats
once, so "0.99980000" publishes as 0.9998 exactly as a float can hold it. Neither
bookTicker nor partial depth carries an event time: the receive time stands in.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from syi_shared.models import OrderBook, PriceTick

VENUE = "binance"


@dataclass(frozen=True)
class Market:
    pair: str  # USDCUSDT
    base: str  # USDC (the published symbol)
    quote: str  # USDT

    @property
    def stream_name(self) -> str:
        return self.pair.lower()  # stream names are lower case


def price_tick(market: Market, bid: str, ask: str, received: str) -> PriceTick:
    bid_d, ask_d = Decimal(bid), Decimal(ask)
    return PriceTick(
        symbol=market.base, venue=VENUE, pair=market.pair, base=market.base, quote=market.quote,
        bid=float(bid_d), ask=float(ask_d), price=float((bid_d + ask_d) / 2),
        event_time=received, ingest_time=received,
    )


def order_book(market: Market, data: dict[str, Any], levels: int, received: str) -> OrderBook:
    return OrderBook(
        symbol=market.base, venue=VENUE, pair=market.pair, base=market.base, quote=market.quote,
        bids=[(float(Decimal(p)), float(Decimal(q))) for p, q in data["bids"][:levels]],
        asks=[(float(Decimal(p)), float(Decimal(q))) for p, q in data["asks"][:levels]],
        event_time=received, ingest_time=received,
    )
