"""The syi-calc dataflow: ray.calculated, ex.mktcap, trad.tbill -> syi.calculated, from the
shared IndexEngine (rebalances, weights, audit chain; prev_cid survives restarts in the
snapshotted engine state).

A bucket closes when the clock allows it (ex.mktcap / trad.tbill partitions past it, idle, or
a progress marker) AND ray-calc has delivered that bucket for every candidate: ray-calc emits
one record per candidate per bucket, in order per symbol (one partition per symbol), so the
newest bucket seen per symbol is exact progress.

Run: `python -m syi_calc`, or `python -m bytewax.run "syi_calc.flow:get_flow()" -r DIR -s 5 -b 0`.
"""

from __future__ import annotations

from typing import Any

from bytewax.dataflow import Dataflow
from pydantic import BaseModel

from syi_calc.settings import Settings
from syi_calc.telemetry import SERVICE, IndexMetrics
from syi_shared.methodology.degraded import degraded_index
from syi_shared.methodology.engine import IndexEngine, bucket_of
from syi_shared.methodology.params import Methodology, load_methodology
from syi_shared.methodology.state import IndexState
from syi_shared.models import IndexValue, RayRecord
from syi_shared.streaming import Closed, StreamHealth, build_flow, millis
from syi_shared.timefmt import now_text

RAY_TOPIC = "ray.calculated"
CLOCKED_TOPICS = ("ex.mktcap", "trad.tbill")  # ray.calculated is gated by per-symbol progress instead


class IndexCalculator:
    """Adapts IndexEngine to the stateful step: every number comes from the engine."""

    def __init__(self, methodology: Methodology, state: Any, metrics: IndexMetrics) -> None:
        engine_state, progress = state if state is not None else (None, {})
        self.engine = IndexEngine(methodology, engine_state)
        self.symbols = methodology.symbols
        self.progress: dict[str, int] = dict(progress)  # symbol -> newest ray bucket delivered
        self.metrics = metrics
        self.last_good: IndexValue | None = None  # carried into a bucket whose calculation fails

    def bucket_of(self, topic: str, value: BaseModel) -> int:
        if isinstance(value, RayRecord):
            return millis(value.bucket_end)  # a ray record belongs to the bucket it was computed for
        return bucket_of(millis(value.event_time))  # type: ignore[attr-defined]

    def event_ms(self, topic: str, value: BaseModel) -> int | None:
        return None if isinstance(value, RayRecord) else millis(value.event_time)  # type: ignore[attr-defined]

    def observe(self, topic: str, value: BaseModel, position: tuple[int, int]) -> None:
        if isinstance(value, RayRecord):
            bucket = millis(value.bucket_end)
            self.progress[value.symbol] = max(self.progress.get(value.symbol, bucket), bucket)
        self.engine.observe(topic, value, position)  # type: ignore[arg-type]

    def ready(self, bucket_end_ms: int) -> bool:
        return all(self.progress.get(symbol, 0) >= bucket_end_ms for symbol in self.symbols)

    def close(self, bucket_end_ms: int) -> Closed:
        value: IndexValue | None = self.engine.close_bucket(bucket_end_ms, now_text())
        if value is not None:
            self.last_good = value
        return self._outputs(value)

    def close_degraded(self, bucket_end_ms: int, reason: str) -> Closed:
        return self._outputs(degraded_index(self.engine, bucket_end_ms, reason, self.last_good, now_text()))

    def _outputs(self, value: IndexValue | None) -> Closed:
        if value is None:
            return Closed([], None)
        self.metrics.published(value)
        newest = millis(value.inputs_max_event_time) if value.inputs_max_event_time else None
        return Closed([("syi.calculated", value)], newest)

    def state(self) -> tuple[IndexState, dict[str, int]]:
        return self.engine.state, dict(self.progress)


def build(settings: Settings, health: StreamHealth | None = None) -> Dataflow:
    methodology = load_methodology(settings.methodology)
    metrics = IndexMetrics()

    def make_calculator(state: Any) -> IndexCalculator:
        return IndexCalculator(methodology, state, metrics)

    return build_flow(
        "syi_calc", settings, SERVICE, IndexEngine.INPUT_TOPICS, CLOCKED_TOPICS, make_calculator, health,
        ("syi.calculated",),
    )


def get_flow() -> Dataflow:
    """For `python -m bytewax.run "syi_calc.flow:get_flow()"`."""
    return build(Settings())
