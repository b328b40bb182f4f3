"""A calculator's dataflow: restore from Kafka, then
input (one consumer, restored positions) -> decode -> one stateful step (the engine) -> one
Kafka transaction per closed bucket."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from confluent_kafka.admin import AdminClient

from syi_shared.admin import provision_topics
from syi_shared.health import InputWatch, broker_watch
from syi_shared.settings import ServiceSettings
from syi_shared.streaming.clock import ClockConfig, PartitionId
from syi_shared.streaming.decode import make_decoder
from syi_shared.streaming.restore import restore
from syi_shared.streaming.settings import StreamSettings
from syi_shared.streaming.step import CalcStep, Calculator, Commit, Resume, StepConfig
from syi_shared.streaming.telemetry import StreamHealth, StreamMetrics
from syi_shared.streaming.transactions import TransactionalWriter
from syi_shared.topics import PROGRESS_TOPIC, STATE_TOPICS, state_topic
from syi_dataflow.compat import check_bytewax
from syi_dataflow.sink import TransactionSink
from syi_dataflow.source import InputSource

# Set on SIGTERM/SIGINT (syi_dataflow.run): the input ends, Bytewax drains the flow and returns.
STOP = threading.Event()


class StepLogic(StatefulBatchLogic):
    """Bytewax's face of the step: batches in, transactions out, wake-ups from the clock."""

    def __init__(self, step: CalcStep) -> None:
        self.step = step

    def on_batch(self, values: list[Any]) -> tuple[Iterable[Commit], bool]:
        return self.step.handle(values, time.time()), StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[Commit], bool]:
        return self.step.tick(time.time()), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Commit], bool]:
        if STOP.is_set():
            return [], StatefulBatchLogic.RETAIN  # stopping, not complete: close nothing more
        return self.step.finish(time.time()), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        now = time.time()
        wake = self.step.wake_at(now)
        return datetime.fromtimestamp(max(wake, now) + 0.01, UTC) if wake is not None else None

    def snapshot(self) -> None:
        return None  # the state is checkpointed in Kafka, in each bucket's transaction


def list_partitions(settings: ServiceSettings, topics: Sequence[str], timeout: float = 30.0) -> tuple[PartitionId, ...]:
    """Every partition of `topics`; fails naming the topics that do not exist."""
    metadata = AdminClient(settings.kafka_config()).list_topics(timeout=timeout)
    missing = [name for name in topics if name not in metadata.topics or metadata.topics[name].error is not None]
    if missing:
        raise RuntimeError(f"topics missing on the broker: {', '.join(missing)} (run `syi topics create`)")
    return tuple((name, partition) for name in topics for partition in sorted(metadata.topics[name].partitions))


def build_flow(
    flow_id: str,
    settings: StreamSettings,
    service: str,
    input_topics: Sequence[str],
    clocked_topics: Sequence[str],
    make_calculator: Callable[[dict[str, Any] | None], Calculator],
    health: StreamHealth | None = None,
    output_topics: Sequence[str] = (),
    chain_topic: str | None = None,
    request_topics: Sequence[str] = (),
) -> Dataflow:
    """`request_topics`: inputs outside the bucket clock, for the calculator's `restate`
    (syi-calc's restatement requests)."""
    check_bytewax()
    provision_topics(settings, topics=[PROGRESS_TOPIC, STATE_TOPICS[state_topic(service)]])
    metrics = StreamMetrics(service)
    health = health or StreamHealth(service)
    kafka_config = settings.kafka_config()
    instance = settings.instance(service)
    # The clock must know at once when nothing can be read (a dead broker is not a silent source):
    # the consumers' error callbacks and a metadata probe feed one watch.
    watch = broker_watch([*input_topics, *request_topics, *output_topics])
    watch.start_probe(kafka_config)
    health.broker, health.inputs = watch, InputWatch(input_topics)
    partitions = list_partitions(settings, [*input_topics, *request_topics, PROGRESS_TOPIC.name])
    clock = ClockConfig(
        input_topics=tuple(input_topics),
        clocked_topics=tuple(clocked_topics),
        partitions=tuple(place for place in partitions if place[0] != PROGRESS_TOPIC.name),
        lateness_ms=round(settings.allowed_lateness_seconds * 1000),
        idle_timeout_s=settings.idle_timeout_seconds,
        progress_timeout_ms=round(settings.progress_timeout_seconds * 1000),
        quiet_note_after_ms={name: round(seconds * 1000) for name, seconds in health.inputs.limits.items()},
    )
    config = StepConfig(service, instance, clock, make_calculator, watch.reachable, tuple(request_topics))
    decode = make_decoder(service, metrics)

    def make_step(resume: Resume) -> CalcStep:
        return CalcStep(config, metrics, health, resume)

    # Fence first: starting the transactional producer aborts whatever a previous copy left
    # open and refuses it any later commit, so the restore below reads a settled topic.
    writer = TransactionalWriter({**kafka_config, **watch.client_config()}, instance, state_topic(service))
    step, positions = restore(
        settings, make_step, state_topic(service), instance, partitions, make_decoder(service, None),
        output_topics, chain_topic, settings.start_at_ms,
    )
    source = InputSource(
        {**kafka_config, **watch.client_config()}, positions, settings.tail, settings.batch_size, STOP,
        group=service,
    )
    flow = Dataflow(flow_id)
    raw = op.input("input", flow, source)
    decoded = op.flat_map("decode", raw, decode)
    keyed = op.key_on("one_key", decoded, lambda _item: "all")  # one step owns the engine
    commits = op.stateful_batch("calc", keyed, lambda _resume: StepLogic(step))
    unkeyed = op.map("unkey", commits, lambda key_value: key_value[1])
    op.output("kafka_out", unkeyed, TransactionSink(lambda: writer))
    return flow
