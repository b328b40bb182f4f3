"""The ray-calc dataflow: cc.prices, cc.orderbook, dl.apy -> metrics.peg, metrics.liquidity,
ray.calculated, one record per candidate per minute bucket, from the shared RayEngine.

Run: `python -m ray_calc` (settings from SYI_*), or with Bytewax's own runner:
`python -m bytewax.run "ray_calc.flow:get_flow()" -r DIR -s 5 -b 0`.
"""

from __future__ import annotations

from typing import Any

from bytewax.dataflow import Dataflow
from pydantic import BaseModel

from ray_calc.settings import Settings
from ray_calc.telemetry import SERVICE, RayMetrics
from syi_shared.methodology.degraded import degraded_rays
from syi_shared.methodology.engine import INPUTS_MAX_EVENT_TIME, RayBucket, RayEngine, bucket_of
from syi_shared.methodology.params import Methodology, load_methodology
from syi_shared.methodology.state import RayState
from syi_shared.streaming import Closed, StreamHealth, build_flow, millis

OUTPUT_TOPICS = ("metrics.peg", "metrics.liquidity", "ray.calculated")


class RayCalculator:
    """Adapts RayEngine to the stateful step: every number comes from the engine."""

    def __init__(self, methodology: Methodology, state: RayState | None, metrics: RayMetrics) -> None:
        self.engine = RayEngine(methodology, state)
        self.metrics = metrics
        self.last_good: RayBucket | None = None  # carried into a bucket whose calculation fails

    def bucket_of(self, topic: str, value: BaseModel) -> int:
        return bucket_of(millis(value.event_time))  # type: ignore[attr-defined]

    def event_ms(self, topic: str, value: BaseModel) -> int | None:
        return millis(value.event_time)  # type: ignore[attr-defined]

    def observe(self, topic: str, value: BaseModel, position: tuple[int, int]) -> None:
        self.engine.observe(topic, value, position)  # type: ignore[arg-type]

    def ready(self, bucket_end_ms: int) -> bool:
        return True  # only the clock gates ray-calc

    def close(self, bucket_end_ms: int) -> Closed:
        bucket = self.engine.close_bucket(bucket_end_ms)
        self.last_good = bucket
        return self._outputs(bucket)

    def close_degraded(self, bucket_end_ms: int, reason: str) -> Closed:
        return self._outputs(degraded_rays(self.engine, bucket_end_ms, reason, self.last_good))

    def _outputs(self, bucket: RayBucket) -> Closed:
        outputs: list[tuple[str, BaseModel]] = [("metrics.peg", row) for row in bucket.peg]
        outputs += [("metrics.liquidity", row) for row in bucket.liquidity]
        outputs += [("ray.calculated", row) for row in bucket.rays]
        newest = [millis(text) for row in bucket.rays if (text := (row.model_extra or {}).get(INPUTS_MAX_EVENT_TIME))]
        self.metrics.bucket(bucket.rays)
        return Closed(outputs, max(newest) if newest else None)

    def state(self) -> RayState:
        return self.engine.state


def build(settings: Settings, health: StreamHealth | None = None) -> Dataflow:
    methodology = load_methodology(settings.methodology)
    metrics = RayMetrics()

    def make_calculator(state: Any) -> RayCalculator:
        return RayCalculator(methodology, state, metrics)

    topics = RayEngine.INPUT_TOPICS
    return build_flow("ray_calc", settings, SERVICE, topics, topics, make_calculator, health, OUTPUT_TOPICS)


def get_flow() -> Dataflow:
    """For `python -m bytewax.run "ray_calc.flow:get_flow()"`."""
    return build(Settings())
