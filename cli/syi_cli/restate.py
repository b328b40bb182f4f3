"""`syi restate`: recompute an interval, compare it with what was published, and ask syi-calc to
publish a revision where the restatement policy says the change is material (docs/methodology.md §9).

The comparison is a pure function (`plan`); reading the topic and submitting the requests are the
thin I/O around it. syi-calc is the only producer of `syi.calculated`: this command never writes
there, it submits one request per material bucket to `syi.restatements` and syi-calc chains and
publishes the revision in its own transaction (docs/topics.md, "Revisions").

The recomputation reads a tape (`recompute`) or, with --from-topics, replays the calculators
from their checkpoints (`recompute_from_topics`), refusing what a checkpoint cannot give
(docs/operations.md, "Restating").
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from syi_shared.methodology.engine import BUCKET_MS, DAY_MS, REBALANCED
from syi_shared.methodology.params import RAY_KINDS, Methodology, parameter_changes, parameter_kind
from syi_shared.models import IndexValue, RayRecord, RestatementRequest
from syi_shared.settings import ServiceSettings
from syi_shared.timefmt import millis, now_text, time_text
from syi_shared.topics import HOUR_MS, SYI_CALCULATED, SYI_RESTATEMENTS

BP = 1e4  # basis points per unit of a decimal rate


@dataclass(frozen=True)
class Change:
    """One bucket of the interval: what is published, what the recomputation gives, and why it is
    material (an empty `reasons`: not material, nothing is published for it)."""

    bucket_end: str
    old: dict[str, Any] | None  # the latest published revision; None: never published
    new: IndexValue
    delta_bp: float | None
    reasons: tuple[str, ...]

    @property
    def material(self) -> bool:
        return self.old is not None and bool(self.reasons)


def included(record: dict[str, Any]) -> set[str]:
    return {c["symbol"] for c in record["constituents"] if c.get("excluded_reason") is None}


def plan(recomputed: Iterable[IndexValue], published: dict[str, dict[str, Any]], materiality_bp: float) -> list[Change]:
    """Compare each recomputed bucket with its latest published revision (`published`: bucket_end ->
    record). Material: |Δ syi_decimal| ≥ `materiality_bp` basis points, another `status`, or another
    set of included constituents."""
    changes = []
    for value in recomputed:
        old = published.get(value.bucket_end)
        if old is None:
            changes.append(Change(value.bucket_end, None, value, None, ("not published",)))
            continue
        delta = (value.syi_decimal - old["syi_decimal"]) * BP
        reasons = []
        if abs(delta) >= materiality_bp:
            reasons.append(f"Δ {delta:+.3f} bp ≥ {materiality_bp:g} bp")
        if value.status != old["status"]:
            reasons.append(f"status {old['status']} → {value.status}")
        before, after = included(old), included(value.model_dump(mode="json"))
        if before != after:
            moved = [f"+{s}" for s in sorted(after - before)] + [f"-{s}" for s in sorted(before - after)]
            reasons.append(f"constituents {' '.join(moved)}")
        changes.append(Change(value.bucket_end, old, value, delta, tuple(reasons)))
    return changes


def latest_revisions(raw_records: Iterable[bytes], first: str, last: str) -> dict[str, dict[str, Any]]:
    """bucket_end -> its latest revision on the topic, for the buckets in [first, last]."""
    latest: dict[str, dict[str, Any]] = {}
    for raw in raw_records:
        record = orjson.loads(raw)
        bucket = record["bucket_end"]
        if first <= bucket <= last and record.get("revision", 0) >= latest.get(bucket, {}).get("revision", -1):
            latest[bucket] = record
    return latest


# --------------------------------------------------------------------------- the I/O around it


def recompute(tape: Path, methodology: Methodology, first_ms: int, last_ms: int) -> list[IndexValue]:
    """The buckets in [first, last] recomputed from a tape (its earlier part is the warm-up:
    docs/methodology.md §9); the tape is read no further than the interval."""
    from syi_cli.compute import stream_tape

    values = []
    for ray_bucket, value in stream_tape(tape, methodology):
        if ray_bucket.bucket_end_ms > last_ms:
            break
        if value is not None and ray_bucket.bucket_end_ms >= first_ms:
            values.append(value)
    return values


ARCHIVE = ("rebuild a tape of the interval and its warm-up from the archive "
           '(`syi tape record --from-archive --warm-up`, docs/operations.md "Rebuilding a tape from the archive") '
           "and restate with --tape")


class Refused(Exception):
    """--from-topics cannot recompute the interval as syi-calc would have under the file: why, and what instead."""


def from_topics_changes(baseline: Methodology, methodology: Methodology) -> dict[str, list[str]]:
    """The parameters `methodology` changes from `baseline` (the file the calculators run with),
    by kind (`params.parameter_kind`); raises Refused for those no checkpoint can be reused for."""
    kinds: dict[str, list[str]] = {}
    for name in parameter_changes(baseline, methodology):
        kinds.setdefault(parameter_kind(name), []).append(name)
    if kinds.get("candidates"):
        raise Refused("--from-topics cannot apply another list of candidates: every checkpointed window and the "
                      f"weights are per candidate; {ARCHIVE}")
    if kinds.get("unclassified"):  # a parameter added without saying where its effect lives: not guessed
        raise Refused(f"--from-topics does not know where the effect of {', '.join(kinds['unclassified'])} lives "
                      f"(syi_shared.methodology.params); {ARCHIVE}")
    return kinds


def recompute_from_topics(settings: ServiceSettings, baseline: Methodology, methodology: Methodology, first_ms: int,
                          last_ms: int, instance: str = "syi-calc", since_ms: int | None = None,
                          ray_instance: str = "ray-calc") -> list[IndexValue]:
    """The buckets in [first, last] recomputed as `syi verify --recompute` does (syi-calc's
    checkpoint at or before `first_ms`, the inputs re-read to each recorded close), under
    `methodology`; with ray-level changes, the ray records it reads are ray-calc's recomputed
    likewise (`RecomputedRays`). Raises Refused when that would not be what the calculators,
    run under it, had published (docs/operations.md, "Restating")."""
    from syi_shared.checkpoint import read_restore
    from syi_shared.streaming.recompute import SERVICE, replay_index
    from syi_shared.topics import state_topic

    kinds = from_topics_changes(baseline, methodology)
    found = read_restore(settings, state_topic(SERVICE), instance, since_ms=since_ms, before_bucket_ms=first_ms)
    checkpoint = found.checkpoint
    if checkpoint is None:
        raise Refused(f"{state_topic(SERVICE)} no longer holds a checkpoint of {instance} at or before "
                      f"{time_text(first_ms)} (retention); {ARCHIVE}")
    _held(settings, checkpoint.input_offsets)
    fresh = checkpoint.bucket_end_ms is None  # the run's start: nothing in it was built under the old file
    if kinds.get("windowed") and not fresh:
        raise Refused(f"--from-topics cannot apply windowed parameters ({', '.join(kinds['windowed'])}): the "
                      f"checkpoint of {time_text(checkpoint.bucket_end_ms)} holds inputs kept or dropped by the old "
                      f"values; {ARCHIVE}")
    rebalance = [] if fresh else [*kinds.get("rebalance", []), *kinds.get("ray-windowed", []),
                                  *kinds.get("ray-rebalance", [])]
    rays: RecomputedRays | None = None
    if any(kinds.get(kind) for kind in RAY_KINDS):
        needed = checkpoint.bucket_end_ms + BUCKET_MS if checkpoint.bucket_end_ms is not None else None
        rays = RecomputedRays(settings, baseline, methodology, kinds.get("ray-windowed", []), needed, last_ms,
                              _pending_from(checkpoint.calculator, needed), ray_instance, since_ms)
        ray_for: Callable[[RayRecord], RayRecord] = rays.get
    else:
        ray_for = _relabel(baseline.version, methodology.version)
    try:
        found = replace(found, checkpoint=replace(checkpoint, calculator=_relabelled_state(checkpoint.calculator,
                                                                                          ray_for)))
        values: list[IndexValue] = []
        closes = replay_index(settings, methodology, found, instance=instance, since_ms=since_ms, to_ms=last_ms,
                              transform=lambda item: _relabelled_item(item, ray_for))
        with closing(closes):
            for mark, value in closes:
                t = mark.bucket_end_ms
                if rebalance and value is not None and t <= first_ms and t % DAY_MS == BUCKET_MS \
                        and REBALANCED in value.flags:
                    rebalance = []  # the day's rebalance ran again, under the new file: the old weights are gone
                if t < first_ms:
                    continue
                if rebalance:
                    raise Refused(f"--from-topics cannot apply parameters the weights in force depend on "
                                  f"({', '.join(rebalance)}) from the checkpoint of "
                                  f"{time_text(checkpoint.bucket_end_ms)}: they were set under the old values, and "
                                  f"no daily rebalance (00:01 UTC) comes before {time_text(first_ms)}; {ARCHIVE}")
                if value is not None:
                    values.append(value)
        return values
    finally:
        if rays is not None:
            rays.close()


class RecomputedRays:
    """The ray records ray-calc would have published under the new file: ray-calc replayed from
    its own checkpoint and the raw input topics (`replay_rays`), as far as syi-calc's replay
    asks (in about bucket order). A record syi-calc's replay reads is swapped for its
    recomputation (`get`); one of a bucket syi-calc had closed at its checkpoint, or after the
    interval, cannot change the interval and is only relabelled."""

    def __init__(self, settings: ServiceSettings, baseline: Methodology, methodology: Methodology,
                 windowed: list[str], needed_ms: int | None, last_ms: int, from_ms: int | None, instance: str,
                 since_ms: int | None) -> None:
        from syi_shared.checkpoint import read_restore
        from syi_shared.streaming.recompute import RAY_SERVICE, replay_rays
        from syi_shared.topics import state_topic

        # the newest checkpoint before the first bucket needed (None: only a run's first one)
        found = read_restore(settings, state_topic(RAY_SERVICE), instance, since_ms=since_ms,
                             before_bucket_ms=from_ms if from_ms is not None else 1)
        checkpoint = found.checkpoint
        if checkpoint is None:
            raise Refused(f"{state_topic(RAY_SERVICE)} no longer holds a checkpoint of {instance} before "
                          f"{time_text(from_ms) if from_ms is not None else 'its run'} (retention); {ARCHIVE}")
        if windowed and checkpoint.bucket_end_ms is not None:
            raise Refused(f"--from-topics cannot apply windowed ray-level parameters ({', '.join(windowed)}): "
                          f"ray-calc's checkpoint of {time_text(checkpoint.bucket_end_ms)} holds windows and inputs "
                          f"built under the old values; {ARCHIVE}")
        _held(settings, checkpoint.input_offsets)
        self.baseline, self.relabel = baseline.version, _relabel(baseline.version, methodology.version)
        self.needed_ms, self.last_ms, self.symbols = needed_ms, last_ms, methodology.symbols
        self.closes = replay_rays(settings, methodology, found, instance=instance, since_ms=since_ms)
        self.records: dict[tuple[int, str], RayRecord] = {}
        self.upto: int | None = None  # the last bucket ray-calc's replay closed

    def get(self, record: RayRecord) -> RayRecord:
        t = millis(record.bucket_end)
        if record.methodology_version != self.baseline or (self.needed_ms is not None and t < self.needed_ms) \
                or t > self.last_ms:
            return self.relabel(record)
        while self.upto is None or self.upto < t:
            try:
                mark, rays = next(self.closes)
            except StopIteration:
                raise Refused(f"ray-calc's recorded closes end before {record.bucket_end}, a bucket it published: "
                              f"{ARCHIVE}") from None
            self.upto = mark.bucket_end_ms
            self.records.update(((mark.bucket_end_ms, ray.symbol), ray) for ray in rays)
            for symbol in self.symbols:  # what syi-calc reads is within minutes of this: bounded memory
                self.records.pop((mark.bucket_end_ms - HOUR_MS, symbol), None)
        recomputed = self.records.get((t, record.symbol))
        if recomputed is None:
            raise Refused(f"ray-calc's replay gives no {record.symbol} record for {record.bucket_end} (its checkpoint "
                          f"is later than the ray records syi-calc's replay needs); {ARCHIVE}")
        return recomputed

    def close(self) -> None:
        self.closes.close()


def _pending_from(state: dict[str, Any], needed_ms: int | None) -> int | None:
    """The first ray bucket syi-calc's replay needs: the oldest it holds pending at its
    checkpoint, else the first after its last closed bucket (None: the run's start)."""
    pending = [int(bucket) for bucket in (state.get("engine") or {}).get("rays", {})]
    return min([*pending, *([needed_ms] if needed_ms is not None else [])], default=needed_ms)


def check_baseline(baseline: Methodology, latest: dict[str, dict[str, Any]]) -> None:
    """Refused when a minute never restated was published under another version than
    `baseline`'s: then it is not the file syi-calc ran with, and the comparison would be wrong."""
    other = sorted({record["methodology_version"] for record in latest.values()
                    if record.get("revision", 0) == 0 and record["methodology_version"] != baseline.version})
    if other:
        raise Refused(f"the interval was published under methodology_version {', '.join(other)}, the baseline file "
                      f"is {baseline.version}: give the file syi-calc ran with as --baseline")


def _held(settings: ServiceSettings, positions: dict[str, dict[str, int]]) -> None:
    """Refused when an input partition no longer holds the records from the checkpoint's position on."""
    from confluent_kafka import TopicPartition
    from syi_shared.streaming.restore import reader

    consumer = reader(settings)
    try:
        for topic, partitions in sorted(positions.items()):
            for partition, offset in sorted(partitions.items()):
                low, _ = consumer.get_watermark_offsets(TopicPartition(topic, int(partition)), timeout=30, cached=False)
                if low > offset:
                    raise Refused(f"{topic}/{partition} no longer holds the inputs from the checkpoint's offset "
                                  f"{offset} (its oldest is {low}: retention); {ARCHIVE}")
    finally:
        consumer.close()


# Ray records published under the baseline are what ray-calc would publish under a file that
# changes no ray-level parameter, but for the label; syi-calc refuses rays of another version.
def _relabel(old: str, new: str) -> Callable[[RayRecord], RayRecord]:
    if old == new:
        return lambda record: record
    return lambda record: record.model_copy(update={"methodology_version": new}) \
        if record.methodology_version == old else record  # another version's stays refused, as live


def _relabelled_item(item: Any, relabel: Callable[[RayRecord], RayRecord]) -> Any:
    from syi_shared.streaming.step import Arrival

    if isinstance(item, Arrival) and isinstance(item.value, RayRecord):
        return replace(item, value=relabel(item.value))
    return item


def _relabelled_state(state: dict[str, Any], relabel: Callable[[RayRecord], RayRecord]) -> dict[str, Any]:
    engine = state.get("engine")
    if not engine:
        return state
    rays = {bucket: {symbol: relabel(RayRecord.model_validate(record)).model_dump(mode="json")
                     for symbol, record in records.items()} for bucket, records in engine["rays"].items()}
    return {**state, "engine": {**engine, "rays": rays}}


def published(settings: ServiceSettings, first_ms: int, last_ms: int, since_ms: int | None = None,
              timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """bucket_end -> its latest revision on syi.calculated (read_committed, to the end), in [first, last]."""
    from syi_shared.kafka import read_to_end

    messages = sorted(read_to_end([SYI_CALCULATED], settings, timeout, since_ms=since_ms),
                      key=lambda m: (m.partition(), m.offset()))
    return latest_revisions((m.value() for m in messages), time_text(first_ms), time_text(last_ms))


def requests_for(changes: Iterable[Change], reason: str) -> list[RestatementRequest]:
    """One request per material change: its record as the next revision of what is published."""
    at = now_text()
    return [
        RestatementRequest(
            request_id=str(uuid.uuid4()), index_id=change.new.index_id, bucket_end=change.bucket_end,
            supersedes_cid=change.old["cid"], revision=change.old.get("revision", 0) + 1, reason=reason,
            record=change.new.model_dump(mode="json"), requested_at=at,
        )
        for change in changes if change.material and change.old is not None
    ]


def submit(settings: ServiceSettings, requests: list[RestatementRequest]) -> None:
    from syi_shared.kafka import make_producer
    from syi_shared.serde import dumps

    producer = make_producer(settings)
    for request in requests:
        producer.produce(SYI_RESTATEMENTS, key=request.key().encode(), value=dumps(request))
    left = producer.flush(30)
    if left:
        raise TimeoutError(f"{left} restatement requests not acknowledged by the broker within 30 s")


@dataclass
class Outcome:
    published: dict[str, dict[str, Any]]  # request_id -> the revision syi-calc published
    refused: dict[str, str]  # request_id -> the dead letter's reason
    missing: list[str]  # request_ids with neither (timed out)


def await_outcome(settings: ServiceSettings, requests: list[RestatementRequest], since_ms: int, timeout: float,
                  progress: Callable[[int, int], None] | None = None, every: float = 1.0) -> Outcome:
    """Wait until syi-calc has published (syi.calculated) or refused (syi.restatements.dlq)
    every request, or `timeout` seconds: a revision answers the request naming its bucket,
    revision and superseded cid; a dead letter carries the request itself."""
    from syi_shared.kafka import read_to_end

    wanted = {(r.bucket_end, r.revision, r.supersedes_cid): r.request_id for r in requests}
    done: dict[str, dict[str, Any]] = {}
    refused: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        for message in read_to_end([SYI_CALCULATED, f"{SYI_RESTATEMENTS}.dlq"], settings, since_ms=since_ms):
            record = orjson.loads(message.value())
            if message.topic() == SYI_CALCULATED:
                key = (record.get("bucket_end"), record.get("revision"), record.get("supersedes_cid"))
                if key in wanted:
                    done[wanted[key]] = record
            else:
                try:
                    request_id = orjson.loads(record.get("raw_value", "")).get("request_id")
                except (orjson.JSONDecodeError, AttributeError):
                    continue
                if request_id in wanted.values():
                    refused[request_id] = record.get("error", "")
        answered = len(done) + len(refused)
        if progress is not None:
            progress(answered, len(requests))
        if answered >= len(requests) or time.monotonic() > deadline:
            missing = [r.request_id for r in requests if r.request_id not in done and r.request_id not in refused]
            return Outcome(done, refused, missing)
        time.sleep(every)


def bucket_range(first: str, last: str) -> tuple[int, int]:
    """[first, last] as bucket ends (ms); raises ValueError for a bad or empty range."""
    low, high = millis(first), millis(last)
    if high < low:
        raise ValueError(f"--to {last} is before --from {first}")
    return low, high
