"""The ray-calc dataflow: cc.prices, cc.orderbook, dl.apy -> metrics.peg, metrics.liquidity,
ray.calculated, one record per candidate per minute bucket, from the shared RayEngine
(through `syi_shared.streaming.calculators.RayCalculator`).

Run: `python -m ray_calc` (settings from SYI_*), or with Bytewax's own runner:
`python -m bytewax.run "ray_calc.flow:get_flow()"` (the state is restored from Kafka either way).
"""

from __future__ import annotations

from typing import Any

from bytewax.dataflow import Dataflow

from ray_calc.settings import Settings
from ray_calc.telemetry import SERVICE, RayMetrics
from syi_dataflow.flow import build_flow
from syi_shared.methodology.engine import RayEngine
from syi_shared.methodology.params import load_methodology
from syi_shared.streaming.calculators import RAY_OUTPUT_TOPICS, RayCalculator
from syi_shared.streaming.telemetry import StreamHealth

OUTPUT_TOPICS = RAY_OUTPUT_TOPICS


def build(settings: Settings, health: StreamHealth | None = None) -> Dataflow:
    methodology = load_methodology(settings.methodology)
    metrics = RayMetrics()

    def make_calculator(state: dict[str, Any] | None) -> RayCalculator:
        return RayCalculator(methodology, state, metrics)

    topics = RayEngine.INPUT_TOPICS
    return build_flow("ray_calc", settings, SERVICE, topics, topics, make_calculator, health, OUTPUT_TOPICS)


def get_flow() -> Dataflow:
    """For `python -m bytewax.run "ray_calc.flow:get_flow()"`."""
    return build(Settings())
