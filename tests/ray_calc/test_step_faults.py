"""The calculators' stateful step survives what it cannot compute: a message that breaks the
engine is dead-lettered with `processing_error:`, a bucket whose close fails is published
degraded with the last good values, and the next bucket is computed normally."""

from __future__ import annotations

import time

import orjson
import pytest

from syi_shared.streaming.calculators import IndexCalculator, RayCalculator
from ray_calc.telemetry import RayMetrics
from syi_calc.telemetry import IndexMetrics
from syi_shared.methodology import audit
from syi_shared.methodology.params import load_methodology
from syi_shared.models import IndexValue, RayRecord
from syi_shared.streaming.clock import ClockConfig
from syi_shared.streaming.step import Arrival, CalcStep, OutMessage, StepConfig
from syi_shared.streaming.telemetry import StreamHealth, StreamMetrics
from tests.shared.methodology.builders import MIN, T0, deep_book, mktcap, pool, price, tbill

PARTITIONS = (("cc.prices", 0), ("cc.orderbook", 0), ("dl.apy", 0), ("ex.mktcap", 0), ("trad.tbill", 0),
              ("ray.calculated", 0))


def step_for(make_calculator, clocked: tuple[str, ...]) -> CalcStep:
    config = ClockConfig(
        input_topics=tuple({topic for topic, _ in PARTITIONS}), clocked_topics=clocked, partitions=PARTITIONS,
        lateness_ms=0, idle_timeout_s=1e9, progress_timeout_ms=30_000,
    )
    return CalcStep(StepConfig("test", "test", config, make_calculator), StreamMetrics("test"), StreamHealth("test"), None)


def batch(step: CalcStep, items: list[Arrival]) -> list[OutMessage]:
    """Every message of the transactions one batch produces."""
    return [message for commit in step.handle(items, time.time()) for message in commit.messages]


def arrival(topic: str, value, offset: int) -> Arrival:
    return Arrival(topic, 0, offset, value.key().encode(), orjson.dumps(value.model_dump(mode="json")), value)


def outputs(messages: list[OutMessage], topic: str) -> list[dict]:
    return [orjson.loads(m.value) for m in messages if m.topic == topic]


def ray_inputs(minute: int, offset: int) -> list[Arrival]:
    """One minute of complete inputs for every candidate, stamped inside bucket T0 + minute."""
    m = load_methodology()
    ms = T0 + (minute - 1) * MIN + 30_000
    items = []
    for symbol in m.symbols:
        items += [arrival("cc.prices", price(symbol, 1.0, ms), offset), arrival("cc.orderbook", deep_book(symbol, ms), offset),
                  arrival("dl.apy", pool(symbol, 4.0, ms), offset)]
        offset += 1
    return items


def test_a_message_that_breaks_the_engine_is_dead_lettered_and_the_step_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    methodology = load_methodology()
    step = step_for(lambda state: RayCalculator(methodology, state, RayMetrics()), ("cc.prices", "cc.orderbook", "dl.apy"))
    poison = price("USDC", 0.999, T0 + 10_000)
    observe = step.calculator.engine.observe

    def fragile(topic, value, position):
        if value == poison:
            raise ArithmeticError("cannot digest this one")
        observe(topic, value, position)

    monkeypatch.setattr(step.calculator.engine, "observe", fragile)
    out = batch(step, [arrival("cc.prices", poison, 0), *ray_inputs(1, 1), *ray_inputs(2, 100)])
    [letter] = outputs(list(out), "cc.prices.dlq")
    assert letter["error"] == "processing_error: ArithmeticError: cannot digest this one"
    assert letter["offset"] == 0 and letter["key"] == "USDC.binance"
    rays = outputs(list(out), "ray.calculated")
    assert {r["bucket_end"] for r in rays} == {"2026-11-27T10:01:00.000Z"}  # the flow went on
    # a locator: where the inputs were read up to when the bucket closed (the poison included)
    assert {r["input_offsets"]["cc.prices"]["0"] for r in rays} == {106}


def test_a_failed_close_publishes_the_bucket_degraded_with_the_last_good_values(monkeypatch: pytest.MonkeyPatch) -> None:
    methodology = load_methodology()
    step = step_for(lambda state: RayCalculator(methodology, state, RayMetrics()), ("cc.prices", "cc.orderbook", "dl.apy"))
    out = batch(step, [*ray_inputs(1, 0), *ray_inputs(2, 100)])  # closes T0+1min
    good = outputs(list(out), "ray.calculated")
    close = step.calculator.engine.close_bucket
    calls = {"n": 0}

    def fails_once(t: int):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ZeroDivisionError("float division by zero")
        return close(t)

    monkeypatch.setattr(step.calculator.engine, "close_bucket", fails_once)
    out = batch(step, [*ray_inputs(3, 200), *ray_inputs(4, 300)])  # closes T0+2min (fails) and T0+3min
    rays = outputs(list(out), "ray.calculated")
    degraded = [r for r in rays if r["bucket_end"] == "2026-11-27T10:02:00.000Z"]
    assert len(degraded) == len(methodology.symbols)
    for record, before in zip(degraded, good):
        assert record["flags"] == [*before["flags"], "calculation_failed: ZeroDivisionError: float division by zero"]
        assert record["ray_decimal"] == before["ray_decimal"]  # the last good value, carried
        RayRecord.model_validate(record)
    normal = [r for r in rays if r["bucket_end"] == "2026-11-27T10:03:00.000Z"]
    assert len(normal) == len(methodology.symbols) and not any("calculation_failed" in " ".join(r["flags"]) for r in normal)
    assert step.health.failed_closes == 1


def test_a_failed_index_close_is_published_degraded_and_keeps_the_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    methodology = load_methodology()
    ray_step = step_for(lambda state: RayCalculator(methodology, state, RayMetrics()), ("cc.prices", "cc.orderbook", "dl.apy"))
    ray_out = batch(ray_step, [item for minute in range(1, 6) for item in ray_inputs(minute, 100 * minute)])
    rays = [RayRecord.model_validate(r) for r in outputs(list(ray_out), "ray.calculated")]

    step = step_for(lambda state: IndexCalculator(methodology, state, IndexMetrics()), ("ex.mktcap", "trad.tbill"))
    caps = [arrival("ex.mktcap", mktcap(symbol, 1e10, T0 + 1_000), i) for i, symbol in enumerate(methodology.symbols)]
    caps += [arrival("ex.mktcap", mktcap(symbol, 1e10, T0 + 4 * MIN), 50 + i) for i, symbol in enumerate(methodology.symbols)]
    bill = [arrival("trad.tbill", tbill(4.0, T0 - MIN), 0), arrival("trad.tbill", tbill(4.0, T0 + 4 * MIN), 1)]
    close = step.calculator.engine.close_bucket
    calls = {"n": 0}

    def fails_second(t: int, published_at: str):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ValueError("math domain error")
        return close(t, published_at)

    monkeypatch.setattr(step.calculator.engine, "close_bucket", fails_second)
    out = batch(step, [*caps, *bill, *(arrival("ray.calculated", r, i) for i, r in enumerate(rays))])
    values = [IndexValue.model_validate(v) for v in outputs(list(out), "syi.calculated")]
    by_bucket = {v.bucket_end[11:16]: v for v in values}
    first, failed, third = by_bucket["10:01"], by_bucket["10:02"], by_bucket["10:03"]  # the third close fails
    assert failed.status == "degraded" and failed.flags[-1] == "calculation_failed: ValueError: math domain error"
    assert failed.syi_decimal == first.syi_decimal  # the last good value, carried
    assert failed.prev_cid == first.cid and third.prev_cid == failed.cid  # one chain
    assert failed.cid == audit.record_cid_of(failed)
