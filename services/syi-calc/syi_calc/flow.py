"""The syi-calc dataflow: ray.calculated, ex.mktcap, trad.tbill -> syi.calculated, from the
shared IndexEngine (through `syi_shared.streaming.calculators.IndexCalculator`: rebalances,
weights, audit chain; prev_cid is the cid of the last record on the topic, across restarts).

A bucket closes when the clock allows it (ex.mktcap / trad.tbill partitions past it, idle, or
a progress marker) AND ray-calc has delivered that bucket for every candidate: ray-calc emits
one record per candidate per bucket, in order per symbol (one partition per symbol), so the
newest bucket seen per symbol is exact progress.

Restatement requests (`syi.restatements`, from `syi restate`) are read too, outside the bucket
clock: each valid one is published as a revision of its bucket, chained to the tip, in a
transaction of its own; a stale one is dead-lettered (docs/operations.md, "Restating").

Run: `python -m syi_calc`, or `python -m bytewax.run "syi_calc.flow:get_flow()"` (the state is
restored from Kafka either way).
"""

from __future__ import annotations

from typing import Any

from bytewax.dataflow import Dataflow

from syi_calc.settings import Settings
from syi_calc.telemetry import SERVICE, IndexMetrics
from syi_dataflow.flow import build_flow
from syi_shared.methodology.engine import IndexEngine
from syi_shared.methodology.params import load_methodology
from syi_shared.streaming.calculators import INDEX_CLOCKED_TOPICS, INDEX_REQUEST_TOPICS, INDEX_TOPIC, IndexCalculator
from syi_shared.streaming.telemetry import StreamHealth


def build(settings: Settings, health: StreamHealth | None = None) -> Dataflow:
    methodology = load_methodology(settings.methodology)
    metrics = IndexMetrics()

    def make_calculator(state: dict[str, Any] | None) -> IndexCalculator:
        return IndexCalculator(methodology, state, metrics)

    return build_flow(
        "syi_calc", settings, SERVICE, IndexEngine.INPUT_TOPICS, INDEX_CLOCKED_TOPICS, make_calculator, health,
        (INDEX_TOPIC,), chain_topic=INDEX_TOPIC, request_topics=INDEX_REQUEST_TOPICS,
    )


def get_flow() -> Dataflow:
    """For `python -m bytewax.run "syi_calc.flow:get_flow()"`."""
    return build(Settings())
