"""Pure parts of ingest-binance: string → float conversion, throttle, settings, backoff."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from ingest_binance.binance_stream import stream_url
from ingest_binance.settings import Settings
from ingest_binance.throttle import Throttle
from ingest_binance.ticks import Market, order_book, price_tick
from syi_shared.backoff import backoff_s

USDC = Market("USDCUSDT", "USDC", "USDT")
NOW = "2026-11-27T10:00:01.234Z"


def test_book_ticker_strings_become_exact_floats_and_a_decimal_mid() -> None:
    tick = price_tick(USDC, "0.99980000", "0.99990000", NOW)
    assert (tick.bid, tick.ask, tick.price) == (0.9998, 0.9999, 0.99985)
    assert tick.price == float(Decimal("0.99985"))  # not (0.9998 + 0.9999) / 2 in float arithmetic
    assert (tick.symbol, tick.venue, tick.pair, tick.base, tick.quote) == (
        "USDC", "binance", "USDCUSDT", "USDC", "USDT")
    assert tick.event_time == tick.ingest_time == NOW and tick.key() == "USDC.binance"


@pytest.mark.parametrize(("bid", "ask"), [("1.01000000", "0.99000000"), ("0.00000000", "1.00000000"), ("abc", "1")])
def test_impossible_quotes_are_rejected(bid: str, ask: str) -> None:
    with pytest.raises((ValidationError, ArithmeticError)):
        price_tick(USDC, bid, ask, NOW)


def test_depth_keeps_the_top_levels_as_floats() -> None:
    data = {"lastUpdateId": 1, "bids": [["0.99980000", "18234567.00000000"], ["0.99970000", "25011034.00000000"]],
            "asks": [["0.99990000", "9876543.00000000"], ["1.00000000", "31220981.00000000"]]}
    book = order_book(USDC, data, levels=1, received=NOW)
    assert book.bids == [(0.9998, 18234567.0)] and book.asks == [(0.9999, 9876543.0)]
    with pytest.raises(ValidationError):  # bids must descend
        order_book(USDC, {"bids": data["bids"][::-1], "asks": data["asks"]}, levels=20, received=NOW)


def test_throttle_passes_one_per_interval_and_keeps_the_newest() -> None:
    now = [0.0]
    throttle = Throttle(1.0, clock=lambda: now[0])
    assert throttle.offer("a", 1) == 1
    assert throttle.offer("a", 2) is None and throttle.offer("a", 3) is None
    assert throttle.offer("b", 10) == 10  # keys are independent
    now[0] = 0.5
    assert throttle.due() == []
    now[0] = 1.0
    assert throttle.due() == [3]  # the newest waiting value, once
    assert throttle.due() == []
    now[0] = 2.5
    assert throttle.offer("a", 4) == 4


def test_a_source_about_once_per_interval_passes_straight_through() -> None:
    now = [0.0]
    throttle = Throttle(1.0, clock=lambda: now[0])
    for second, jitter in enumerate((0.0, 0.86, 2.02, 2.88, 3.95)):  # frames ~1 s apart, early or late
        now[0] = jitter
        assert throttle.offer("a", second) == second  # not held for a slot that drifts later
    now[0] = 4.5
    assert throttle.offer("a", 99) is None  # faster than 0.75 interval: held, newest wins


def test_settings_take_a_comma_separated_pair_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYI_BINANCE_PAIRS", "usdcusdt, DAIUSDT,USDCUSDT")
    monkeypatch.setenv("SYI_BINANCE_REST_URL", "http://127.0.0.1:8090")
    settings = Settings()
    assert settings.binance_pairs == ["USDCUSDT", "DAIUSDT"] and settings.binance_rest_url == "http://127.0.0.1:8090"
    monkeypatch.setenv("SYI_BINANCE_PAIRS", " ")
    with pytest.raises(ValidationError, match="SYI_BINANCE_PAIRS"):
        Settings()


def test_stream_url_and_backoff() -> None:
    url = stream_url("wss://data-stream.binance.vision/", [USDC])
    assert url == "wss://data-stream.binance.vision/stream?streams=usdcusdt@bookTicker/usdcusdt@depth20@100ms"
    for attempt in range(12):
        delay = backoff_s(attempt, 0.5, 60.0)
        cap = min(60.0, 0.5 * 2**attempt)
        assert cap / 2 <= delay <= cap


def test_quotes_and_books_outside_the_bounds_are_refused_as_out_of_range() -> None:
    from syi_shared.models import validation_reason

    with pytest.raises(ValidationError) as info:
        price_tick(USDC, "2000000.00000000", "2000001.00000000", NOW)
    assert validation_reason(info.value).startswith("out_of_range: bid: 2000000.0 is above 1e6")
    data = {"bids": [["0.99980000", "2000000000000000.00000000"]], "asks": [["0.99990000", "1.00000000"]]}
    with pytest.raises(ValidationError) as info:
        order_book(USDC, data, levels=20, received=NOW)
    assert validation_reason(info.value) == "out_of_range: bids.0.1: 2000000000000000.0 is above 1e15"
    many = {"bids": [["0.99980000", "1.0"]] * 1500, "asks": [["0.99990000", "1.0"]] * 1500}
    assert len(order_book(USDC, many, levels=1000, received=NOW).bids) == 1000  # the most a side takes

