"""A message's time strings are parsed once on their way through a calculator: its model's
checks, the decoder's freshness metric, the bucket it falls in, the clock and the engine's
ordering all read the same parsed value (`timefmt.millis`, cached per string)."""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest

from ray_calc.telemetry import RayMetrics
from syi_shared import timefmt
from syi_shared.methodology.params import load_methodology
from syi_shared.streaming.calculators import RayCalculator
from syi_shared.streaming.decode import make_decoder
from syi_shared.streaming.step import Arrival
from syi_shared.streaming.telemetry import StreamMetrics
from syi_shared.topics import CC_PRICES
from tests.ray_calc.test_step_faults import step_for
from tests.shared.methodology.builders import T0, price


class Message:
    """The part of a consumed Kafka message the decoder reads."""

    def __init__(self, topic: str, key: bytes, value: bytes) -> None:
        self._topic, self._key, self._value = topic, key, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 7

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value


def test_each_time_string_of_a_message_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    tick = price("USDC", 0.9998, T0 + 12_345, ingest_ms=T0 + 12_400)
    raw = orjson.dumps(tick.model_dump(mode="json"))
    methodology = load_methodology()
    step = step_for(lambda state: RayCalculator(methodology, state, RayMetrics()), (CC_PRICES,))
    decode = make_decoder("test", StreamMetrics("test"))

    timefmt.millis.cache_clear()
    parsed: Counter[str] = Counter()
    real = timefmt.parse_utc

    def counting(text: str):
        parsed[text] += 1
        return real(text)

    monkeypatch.setattr(timefmt, "parse_utc", counting)
    [item] = decode(Message(CC_PRICES, b"USDC.binance", raw))
    assert isinstance(item, Arrival) and item.value == tick
    step.handle([item], time.time())  # bucket, clock, engine (sort key: event and ingest time)

    assert step.calculator.engine.state.prices  # it went all the way in
    assert parsed == {tick.event_time: 1, tick.ingest_time: 1}
