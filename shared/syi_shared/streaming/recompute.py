"""Recompute published index records from Kafka alone (`syi verify --recompute`).

From syi-calc's checkpoint at or before the range (its state topic), the inputs are re-read up
to each recorded close's positions and the bucket is closed again by the very code syi-calc
runs (`CalcStep` + `IndexCalculator`), silently. Each published record in the range must equal
its recomputation: the same `input_offsets` as its close, the same `input_cid` (the inputs),
the same values, the same `cid`. The first difference is reported, with where and what.

The same replay (`replay_index`, and ray-calc's `replay_rays`) recomputes an interval under
another methodology file for `syi restate --from-topics` (cli/syi_cli/restate.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import orjson
from syi_shared.checkpoint import CheckpointError, CloseMark, Restore, read_restore
from syi_shared.kafka import read_to_end
from syi_shared.methodology.audit import LOCATOR_FIELDS
from syi_shared.methodology.engine import IndexEngine, RayEngine
from syi_shared.methodology.params import Methodology
from syi_shared.models import IndexValue, RayRecord
from syi_shared.settings import ServiceSettings
from syi_shared.streaming.calculators import INDEX_CLOCKED_TOPICS, INDEX_TOPIC, IndexCalculator, RayCalculator
from syi_shared.streaming.clock import ClockConfig, PartitionId
from syi_shared.streaming.decode import make_decoder
from syi_shared.streaming.restore import InputReplay, start_positions
from syi_shared.streaming.step import CalcStep, Calculator, Closed, Resume, StepConfig
from syi_shared.streaming.telemetry import StreamHealth, StreamMetrics
from syi_shared.timefmt import millis, time_text
from syi_shared.topics import PROGRESS_TOPIC, RAY_CALCULATED, state_topic

SERVICE = "syi-calc"
RAY_SERVICE = "ray-calc"
CHECKED_IN_ORDER = ("input_offsets", "input_cid", "values", "cid")


@dataclass(frozen=True)
class Difference:
    bucket_end: str
    where: str  # "partition 0 offset 41"
    what: str  # one of CHECKED_IN_ORDER
    detail: str

    def __str__(self) -> str:
        return f"{self.where} (bucket {self.bucket_end}): {self.what} differs: {self.detail}"


@dataclass(frozen=True)
class RecomputeReport:
    checked: int
    first_bucket: str | None
    last_bucket: str | None
    checkpoint_bucket: str | None  # the snapshot the recomputation started from
    difference: Difference | None

    @property
    def clean(self) -> bool:
        return self.difference is None and self.checked > 0


def recompute_index(
    settings: ServiceSettings,
    methodology: Methodology,
    *,
    instance: str = SERVICE,
    topic: str = INDEX_TOPIC,
    from_ms: int | None = None,
    to_ms: int | None = None,
    since_ms: int | None = None,
    transform: Callable[[Any], Any] | None = None,
) -> RecomputeReport:
    """Check the records of `topic` whose bucket is in [from_ms, to_ms] against their
    recomputation. `since_ms` (Kafka time): a run that began then (tests on a shared broker).
    `transform` sees every decoded input item (a test's tampering)."""
    records = _records(settings, topic, since_ms)
    if from_ms is None and records:
        from_ms = min(records)  # everything on the topic (as far as a checkpoint reaches back)
    found = read_restore(settings, state_topic(SERVICE), instance, since_ms=since_ms, before_bucket_ms=from_ms)
    checkpoint = found.checkpoint
    if checkpoint is None:
        raise CheckpointError(f"no checkpoint of {instance} on {state_topic(SERVICE)} before "
                              f"{_text(from_ms)}: nothing to recompute from (try a later --from)")

    def own_chain(step: CalcStep, t: int) -> None:
        published = records.get(t)
        if published is not None:
            step.calculator.continue_chain(published[1].get("prev_cid"))  # each record on its own merit

    checked, first, last = 0, None, None
    closes = replay_index(settings, methodology, found, instance=instance, since_ms=since_ms, to_ms=to_ms,
                          transform=transform, before_close=own_chain)
    with closing(closes):  # stopping early closes the replay's consumer now
        for mark, value in closes:
            published = records.get(mark.bucket_end_ms)
            if published is None or (from_ms is not None and mark.bucket_end_ms < from_ms):
                continue
            where, record = published
            difference = _compare(value, record, mark.input_offsets, where)
            checked, first, last = checked + 1, first or record["bucket_end"], record["bucket_end"]
            if difference is not None:
                return RecomputeReport(checked, first, last, _text(checkpoint.bucket_end_ms), difference)
    return RecomputeReport(checked, first, last, _text(checkpoint.bucket_end_ms), None)


def input_partitions(settings: ServiceSettings, topics: tuple[str, ...] = IndexEngine.INPUT_TOPICS) -> list[PartitionId]:
    """Every partition a calculator reads: its inputs' and the progress topic's."""
    return [(name, int(partition)) for name in (*topics, PROGRESS_TOPIC.name) for partition in _partitions(settings, name)]


def replay_index(
    settings: ServiceSettings,
    methodology: Methodology,
    found: Restore,
    *,
    instance: str = SERVICE,
    since_ms: int | None = None,
    to_ms: int | None = None,
    transform: Callable[[Any], Any] | None = None,
    before_close: Callable[[CalcStep, int], None] | None = None,
) -> Iterator[tuple[CloseMark, IndexValue | None]]:
    """syi-calc again, silently, under `methodology`: from `found`'s checkpoint, each recorded
    close (up to `to_ms`) at the input positions it closed at; yields the close and the index
    record it gives (None: none). `transform` sees every decoded input item; `before_close`
    runs just before each close (`syi verify --recompute` sets the chain there)."""
    closes = replay_closes(settings, SERVICE, lambda state: IndexCalculator(methodology, state), IndexEngine.INPUT_TOPICS,
                           INDEX_CLOCKED_TOPICS, found, instance=instance, since_ms=since_ms, to_ms=to_ms,
                           transform=transform, before_close=before_close)
    with closing(closes):
        for mark, closed in closes:
            yield mark, next((value for topic, value in closed.outputs if topic == INDEX_TOPIC), None)  # type: ignore[misc]


def replay_rays(settings: ServiceSettings, methodology: Methodology, found: Restore, *, instance: str = RAY_SERVICE,
                since_ms: int | None = None, to_ms: int | None = None) -> Iterator[tuple[CloseMark, list[RayRecord]]]:
    """ray-calc again, silently, under `methodology`, as `replay_index` does syi-calc: each
    recorded close and the ray records it gives."""
    closes = replay_closes(settings, RAY_SERVICE, lambda state: RayCalculator(methodology, state), RayEngine.INPUT_TOPICS,
                           RayEngine.INPUT_TOPICS, found, instance=instance, since_ms=since_ms, to_ms=to_ms)
    with closing(closes):
        for mark, closed in closes:
            yield mark, [value for topic, value in closed.outputs if topic == RAY_CALCULATED]  # type: ignore[misc]


def replay_closes(
    settings: ServiceSettings,
    service: str,
    make_calculator: Callable[[dict[str, Any] | None], Calculator],
    input_topics: tuple[str, ...],
    clocked_topics: tuple[str, ...],
    found: Restore,
    *,
    instance: str,
    since_ms: int | None = None,
    to_ms: int | None = None,
    transform: Callable[[Any], Any] | None = None,
    before_close: Callable[[CalcStep, int], None] | None = None,
) -> Iterator[tuple[CloseMark, Closed]]:
    """A calculator from `found`'s checkpoint, each recorded close (up to `to_ms`) again at the
    input positions it closed at, silently; yields the close and what it gives."""
    checkpoint = found.checkpoint
    if checkpoint is None:
        raise CheckpointError(f"no checkpoint of {instance} to replay from")
    partitions = input_partitions(settings, input_topics)
    config = StepConfig(service, instance, ClockConfig(
        input_topics=input_topics, clocked_topics=clocked_topics,
        partitions=tuple(place for place in partitions if place[0] != PROGRESS_TOPIC.name),
        lateness_ms=0, idle_timeout_s=1e9, progress_timeout_ms=0,
    ), make_calculator)
    step = CalcStep(config, StreamMetrics(f"{service}-recompute"), StreamHealth(service),
                    Resume(clock=checkpoint.clock, calculator=checkpoint.calculator), now=0.0)
    decode = make_decoder(service, None)
    replay = InputReplay(settings, start_positions(settings, partitions, checkpoint.input_offsets, since_ms),
                         (lambda message: [transform(item) for item in decode(message)]) if transform else decode)
    step.silent = True
    try:
        step.replay(replay.starts(), 0.0)
        for mark in found.closes:
            t = mark.bucket_end_ms
            if to_ms is not None and t > to_ms:
                break
            step.replay(replay.read_to(mark.input_offsets), 0.0)
            if before_close is not None:
                before_close(step, t)
            step.close(t, 0.0)
            yield mark, step.last_closed or Closed([], None)
    finally:
        step.silent = False
        replay.close()


def _compare(value: IndexValue | None, record: dict[str, Any], positions: dict[str, dict[str, int]],
             where: str) -> Difference | None:
    bucket = record["bucket_end"]
    if value is None:
        return Difference(bucket, where, "values", "the recomputation publishes nothing for this bucket")
    recomputed = value.model_dump(mode="json")
    # the calculation's inputs (a close mark also holds the progress and restatement topics')
    offsets = {name: partitions for name, partitions in positions.items() if name in IndexEngine.INPUT_TOPICS}
    if record.get("input_offsets") is not None and record["input_offsets"] != offsets:
        return Difference(bucket, where, "input_offsets",
                          f"the record says {record['input_offsets']}, its close was at {offsets}")
    if record.get("input_cid") != recomputed["input_cid"]:
        return Difference(bucket, where, "input_cid", f"recorded {record.get('input_cid')}, recomputed "
                          f"{recomputed['input_cid']} (the inputs read are not the ones it was computed from)")
    ignored = {*LOCATOR_FIELDS, "cid", "prev_cid", "input_cid"}
    changed = sorted(name for name in {*record, *recomputed} - ignored if record.get(name) != recomputed.get(name))
    if changed:
        shown = ", ".join(f"{name}: recorded {record.get(name)!r}, recomputed {recomputed.get(name)!r}"
                          for name in changed[:3])
        return Difference(bucket, where, "values", shown[:600])
    if record.get("cid") != recomputed["cid"]:
        return Difference(bucket, where, "cid", f"recorded {record.get('cid')}, recomputed {recomputed['cid']}")
    return None


def _records(settings: ServiceSettings, topic: str, since_ms: int | None) -> dict[int, tuple[str, dict[str, Any]]]:
    """bucket -> (where, record): each bucket's first record (revision 0) on the topic."""
    found: dict[int, tuple[str, dict[str, Any]]] = {}
    for message in sorted(read_to_end([topic], settings, since_ms=since_ms), key=lambda m: (m.partition(), m.offset())):
        record = orjson.loads(message.value())
        bucket = millis(record["bucket_end"])
        if record.get("revision", 0) == 0:
            found.setdefault(bucket, (f"partition {message.partition()} offset {message.offset()}", record))
    return found


def _partitions(settings: ServiceSettings, topic: str) -> list[int]:
    from confluent_kafka.admin import AdminClient

    return sorted(AdminClient(settings.kafka_config()).list_topics(topic, timeout=30).topics[topic].partitions)


def _text(ms: int | None) -> str | None:
    return time_text(ms) if ms is not None else None
