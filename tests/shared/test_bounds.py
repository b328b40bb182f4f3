"""Plausibility bounds (docs/topics.md): every bound on both sides, strings for numbers, the
future rule, the key check, and the dead-letter cap."""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest
from pydantic import ValidationError

from syi_shared import serde
from syi_shared.codec import DecodeError, decode_value, validate_value
from syi_shared.dlq import RAW_MAX_BYTES, dead_letter
from syi_shared.models import MarketCap, OrderBook, PoolYield, PriceTick, TBill, validation_reason
from tests.shared.examples import APY, MKTCAP, ORDERBOOK, PRICE, TBILL

BY_MODEL = {PriceTick: PRICE, OrderBook: ORDERBOOK, PoolYield: APY, MarketCap: MKTCAP, TBill: TBILL}
TOPIC_OF = {PriceTick: "cc.prices", OrderBook: "cc.orderbook", PoolYield: "dl.apy", MarketCap: "ex.mktcap", TBill: "trad.tbill"}


def reason(model, **changes) -> str:
    with pytest.raises(ValidationError) as info:
        model.model_validate({**BY_MODEL[model], **changes})
    return validation_reason(info.value)


def accepted(model, **changes):
    return model.model_validate({**BY_MODEL[model], **changes})


# (model, field, allowed edge values, rejected values and the reason each gives)
NUMBER_BOUNDS = [
    (PriceTick, "price", [5e-324, 1e-300, 1e6], {0.0: "0.0 is not above 0", -1.0: "-1.0 is not above 0",
                                                 1000000.0000000001: "1000000.0000000001 is above 1e6"}),
    (PriceTick, "bid", [5e-324, 1e-300], {0.0: "0.0 is not above 0", 2e6: "2000000.0 is above 1e6"}),
    (PriceTick, "ask", [1e6], {0.0: "0.0 is not above 0", 2e6: "2000000.0 is above 1e6"}),
    (PoolYield, "tvl_usd", [0.0, 1e13], {-1.0: "-1.0 is below 0", 1.0000000000000002e13: "10000000000000.002 is above 1e13"}),
    (PoolYield, "apy_base_pct", [-100.0, 10_000.0], {-100.5: "-100.5 is below -100", 10_000.5: "10000.5 is above 10000"}),
    (PoolYield, "apy_reward_pct", [-100.0, 10_000.0], {-101.0: "-101.0 is below -100", 1e5: "100000.0 is above 10000"}),
    (PoolYield, "apy_pct", [-100.0, 10_000.0], {-101.0: "-101.0 is below -100", 1e308: "1e+308 is above 10000"}),
    (MarketCap, "market_cap_usd", [0.0, 1e13], {-1.0: "-1.0 is below 0", 1e308: "1e+308 is above 1e13"}),
    (MarketCap, "price_usd", [1e-300, 1e6], {0.0: "0.0 is not above 0", 1e7: "10000000.0 is above 1e6"}),
    (TBill, "rate_pct", [-5.0, 50.0], {-5.01: "-5.01 is below -5", 50.01: "50.01 is above 50", 1e308: "1e+308 is above 50"}),
]


@pytest.mark.parametrize(("model", "field", "edges", "rejected"), NUMBER_BOUNDS, ids=lambda x: getattr(x, "__name__", None))
def test_number_bounds_accept_their_edges_and_reject_beyond(model, field, edges, rejected) -> None:
    for value in edges:
        assert getattr(accepted(model, **{field: value}), field) == value
    for value, text in rejected.items():
        assert reason(model, **{field: value}) == f"out_of_range: {field}: {text}"


@pytest.mark.parametrize(("side", "position", "value", "text"), [
    ("bids", 0, 0.0, "0.0 is not above 0"),
    ("asks", 0, 1.5e6, "1500000.0 is above 1e6"),
    ("bids", 1, -2.0, "-2.0 is below 0"),
    ("asks", 1, 1.1e15, "1100000000000000.0 is above 1e15"),
])
def test_order_book_level_bounds(side: str, position: int, value: float, text: str) -> None:
    levels = [list(level) for level in ORDERBOOK[side]]
    levels[1][position] = value  # position 0: the level's price, 1: its quantity
    assert reason(OrderBook, **{side: levels}) == f"out_of_range: {side}.1.{position}: {text}"


def test_order_book_level_edges_are_accepted() -> None:
    book = accepted(OrderBook, bids=[[1e6, 1e15], [5e-324, 0.0]], asks=[[5e-324, 0.0], [1e6, 1e15]])
    assert book.bids[0] == (1e6, 1e15) and book.asks[0] == (5e-324, 0.0)


def test_order_book_takes_at_most_1000_levels_a_side() -> None:
    assert len(accepted(OrderBook, bids=[[0.5, 1.0]] * 1000).bids) == 1000
    assert reason(OrderBook, bids=[[0.5, 1.0]] * 1001) == "out_of_range: bids: 1001 levels is above 1000"
    assert reason(OrderBook, asks=[[2.0, 1.0]] * 100_000) == "out_of_range: asks: 100000 levels is above 1000"


@pytest.mark.parametrize("model", list(BY_MODEL), ids=lambda m: m.__name__)
def test_times_before_2009_01_03_are_out_of_range(model) -> None:
    early = "2009-01-02T23:59:59.999Z"
    assert reason(model, event_time=early) == f"out_of_range: event_time: {early} is before 2009-01-03"
    assert reason(model, ingest_time=early).startswith(f"out_of_range: ingest_time: {early} is before 2009-01-03")
    if model is not TBill:  # a T-bill observed after its event date: see the observation_date test
        value = accepted(model, event_time="2009-01-03T00:00:00.000Z", ingest_time="2009-01-03T00:00:00.000Z")
        assert value.event_time == "2009-01-03T00:00:00.000Z"


@pytest.mark.parametrize("model", list(BY_MODEL), ids=lambda m: m.__name__)
def test_event_time_more_than_5_s_after_ingest_time_is_future(model) -> None:
    ingest = "2026-11-27T10:00:00.000Z"
    assert accepted(model, event_time="2026-11-27T10:00:05.000Z", ingest_time=ingest).ingest_time == ingest  # skew
    assert reason(model, event_time="2026-11-27T10:00:05.001Z", ingest_time=ingest) == (
        f"future: event_time 2026-11-27T10:00:05.001Z is more than 5 s after ingest_time {ingest}")
    assert reason(model, event_time="2100-01-01T00:00:00.000Z", ingest_time=ingest).startswith(
        "future: event_time 2100-01-01T00:00:00.000Z is more than 5 s after ingest_time")


def test_far_future_event_and_ingest_times_pass_the_clock_free_bounds() -> None:
    far = "2100-01-01T00:00:00.000Z"
    assert accepted(PriceTick, event_time=far, ingest_time=far).event_time == far


def test_tbill_observation_date_is_not_after_the_event_time_date() -> None:
    assert accepted(TBill, observation_date="2026-11-26").observation_date == "2026-11-26"  # same day
    assert reason(TBill, observation_date="2026-11-27") == (
        "out_of_range: observation_date: 2026-11-27 is after the event_time date 2026-11-26")
    assert accepted(TBill, observation_date="1954-01-04").observation_date == "1954-01-04"  # history is fine


@pytest.mark.parametrize(("model", "field", "text"), [
    (PriceTick, "price", "0.99985"),
    (PriceTick, "bid", "0.9998"),
    (PoolYield, "tvl_usd", "412345678.0"),
    (PoolYield, "apy_base_pct", "4.12"),
    (MarketCap, "market_cap_usd", "75123456789"),
    (TBill, "rate_pct", "4.12"),
])
def test_strings_for_numbers_are_rejected_not_coerced(model, field, text) -> None:
    assert reason(model, **{field: text}) == f"{field}: Input should be a valid number, not a string"


def test_strings_in_order_book_levels_and_bools_are_rejected() -> None:
    assert reason(OrderBook, bids=[["0.9998", 1.0]]) == "bids.0.0: Input should be a valid number, not a string"
    assert reason(PoolYield, stablecoin="true").startswith("stablecoin: Input should be a valid boolean")
    assert reason(PriceTick, price=True) == "price: Input should be a valid number"


def test_integers_for_floats_stay_accepted() -> None:
    tick = accepted(PriceTick, price=1, bid=1, ask=1)
    assert tick.price == 1.0 and isinstance(tick.price, float)
    assert accepted(MarketCap, market_cap_usd=75123456789).market_cap_usd == 75123456789.0


def test_bound_errors_come_first_and_long_reasons_are_cut() -> None:
    text = reason(PriceTick, venue="BINANCE", price=1e308)
    assert text.startswith("out_of_range: price: 1e+308 is above 1e6; venue: ")
    many = reason(OrderBook, bids=[[-1.0, 1.0]] * 500)
    assert many.count("out_of_range:") == 10 and many.endswith("and 490 more errors")


# ----------------------------------------------------------------------------- key check


def test_key_must_be_the_values_own_key() -> None:
    raw = orjson.dumps(PRICE)
    assert decode_value("cc.prices", raw, b"USDC.binance").symbol == "USDC"
    assert decode_value("cc.prices", raw).symbol == "USDC"  # no key given: not checked
    with pytest.raises(DecodeError) as info:
        decode_value("cc.prices", raw, None)
    assert info.value.reason == "key: expected 'USDC.binance', got null"
    with pytest.raises(DecodeError) as info:
        decode_value("cc.prices", raw, b"USDT.binance")
    assert info.value.reason == "key: expected 'USDC.binance', got 'USDT.binance'"


@pytest.mark.parametrize("model", list(BY_MODEL), ids=lambda m: m.__name__)
def test_every_input_topic_checks_its_key(model) -> None:
    value = accepted(model)
    assert validate_value(TOPIC_OF[model], BY_MODEL[model], value.key()) == value
    with pytest.raises(DecodeError, match=r"^key: expected .*, got 'other'$"):
        validate_value(TOPIC_OF[model], BY_MODEL[model], "other")


def test_an_invalid_value_reports_the_value_not_the_key() -> None:
    with pytest.raises(DecodeError) as info:
        decode_value("ex.mktcap", orjson.dumps({**MKTCAP, "market_cap_usd": 1e308}), None)
    assert info.value.reason == "out_of_range: market_cap_usd: 1e+308 is above 1e13"


# ----------------------------------------------------------------------------- dead-letter cap


def letter_of(raw: bytes | None, error: str = "value: invalid JSON", key: bytes | None = b"k"):
    return dead_letter(source_topic="cc.prices", partition=0, offset=7, key=key, raw_value=raw, error=error, service="test")


def test_small_values_are_kept_whole_without_length_fields() -> None:
    raw = b"x" * RAW_MAX_BYTES
    letter = letter_of(raw)
    assert letter.raw_value == raw.decode() and letter.raw_length is None and letter.raw_sha256 is None
    dumped = orjson.loads(serde.dumps(letter))
    assert "raw_length" not in dumped and "raw_sha256" not in dumped


def test_long_values_are_cut_at_64_kib_with_length_and_hash_of_the_whole() -> None:
    raw = orjson.dumps({**PRICE, "pair": "P" * 900_000})
    letter = letter_of(raw)
    assert letter.raw_value == raw[:RAW_MAX_BYTES].decode()
    assert letter.raw_length == len(raw) and letter.raw_sha256 == hashlib.sha256(raw).hexdigest()
    assert len(serde.dumps(letter)) < RAW_MAX_BYTES + 1024
    assert serde.loads(type(letter), serde.dumps(letter)) == letter


def test_a_cut_never_splits_a_utf8_character() -> None:
    raw = b"a" + "é".encode() * RAW_MAX_BYTES  # the cut at 64 KiB lands inside an "é"
    letter = letter_of(raw)
    assert letter.raw_value == "a" + "é" * ((RAW_MAX_BYTES - 1) // 2)  # still text, not base64
    assert letter.raw_length == len(raw)


def test_binary_values_are_cut_then_kept_as_base64() -> None:
    raw = bytes(range(256)) * 4000
    letter = letter_of(raw)
    assert base64.b64decode(letter.raw_value) == raw[:RAW_MAX_BYTES]
    assert letter.raw_sha256 == hashlib.sha256(raw).hexdigest()


def test_long_reasons_and_keys_are_cut_too() -> None:
    letter = letter_of(b"{}", error="e" * 100_000, key=b"K" * 100_000)
    assert len(letter.error) < 4200 and letter.error.endswith("(95904 more characters)")
    assert len(letter.key or "") < 1100


@pytest.mark.parametrize("text", [
    "2026-11-27T10:00:00.000Z\n",  # a trailing newline (Python's `$` would let it through)
    "2026-11-27T10:00:00.000+00:00", "2026-11-27 10:00:00.000Z", "20261127T100000Z", "2026-11-27T10:00Z",
    "2026-11-27T10:00:00,000Z", "2026-11-27T10:00:00.0000000Z", "2026-11-27T24:00:00.000Z",
    "2026-02-30T10:00:00.000Z",  # the pattern allows it; the calendar does not
    "２０２６-11-27T10:00:00.000Z",  # digits, but not ASCII ones
])
def test_times_are_the_one_utc_layout(text: str) -> None:
    assert reason(PriceTick, event_time=text).startswith("event_time: Value error, ")


def test_future_rule_compares_times_written_with_different_precision() -> None:
    # Texts of one length compare as text; others are parsed (text order would be wrong here).
    assert accepted(PriceTick, event_time="2026-11-27T10:00:05Z", ingest_time="2026-11-27T10:00:00.5Z")
    assert reason(PriceTick, event_time="2026-11-27T10:00:05.1Z", ingest_time="2026-11-27T10:00:00Z").startswith("future: ")
    assert accepted(PriceTick, event_time="2026-11-27T09:59:59.999Z", ingest_time="2026-11-27T10:00:00Z")
