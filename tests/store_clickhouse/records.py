"""Test records for the ClickHouse writer: ticks, books and index values of a venue of their own."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from syi_shared.models import IndexValue, OrderBook, PriceTick
from syi_shared.timefmt import format_utc
from tests.shared.examples import SYI

T0 = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)


def unique_venue() -> str:
    """Tests share topics and stores: each test's rows carry a venue nobody else uses."""
    return f"t-{uuid.uuid4().hex[:10]}"


def at(millis: int) -> str:
    return format_utc(T0 + timedelta(milliseconds=millis))


def tick(venue: str, millis: int, price: float, symbol: str = "USDC", ingest_delay_ms: int = 40) -> PriceTick:
    return PriceTick(
        symbol=symbol, venue=venue, pair=f"{symbol}USDT", base=symbol, quote="USDT",
        bid=price * 0.9999, ask=price * 1.0001, price=price,
        event_time=at(millis), ingest_time=at(millis + ingest_delay_ms),
    )


def book(venue: str, millis: int, bids: list[tuple[float, float]], asks: list[tuple[float, float]],
         symbol: str = "USDC") -> OrderBook:
    return OrderBook(
        symbol=symbol, venue=venue, pair=f"{symbol}USDT", base=symbol, quote="USDT",
        bids=bids, asks=asks, event_time=at(millis), ingest_time=at(millis + 30),
    )


def index_value(index_id: str, minute: int, syi_percent: float, revision: int = 0) -> IndexValue:
    bucket_end = T0 + timedelta(minutes=minute)
    return IndexValue.model_validate({
        **SYI, "index_id": index_id, "bucket_end": format_utc(bucket_end), "syi_percent": syi_percent,
        "syi_decimal": syi_percent / 100, "revision": revision, "cid": f"cid-{index_id}-{minute}-{revision}",
        "inputs_max_event_time": format_utc(bucket_end - timedelta(milliseconds=130)),
        "published_at": format_utc(bucket_end + timedelta(milliseconds=1210)),  # 1.21 s after the close
    })
