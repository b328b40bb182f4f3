"""The calculators' one stateful step, without Bytewax: bucket clock + engine adapter, turning
input items into transactions (docs/streaming.md, "Exactly once").

Each closed bucket becomes one `Commit`: its outputs, the dead letters found since the previous
close, and a close mark for the state topic (the input positions at the close), written by
the sink in one Kafka transaction. A full snapshot of the state goes with the first close of a
run and then at least hourly, so a restart (or a recomputation) loads the newest snapshot and
re-reads the inputs up to each later close mark. No input and no bucket can stop the step: an
exception while handling one message dead-letters it (`processing_error: ...`); one while
closing a bucket publishes it degraded (the calculator's `close_degraded`). A valid message the
calculator refuses (`refusal`, e.g. syi-calc's `methodology_mismatch: ...`) is dead-lettered too.

Request topics (syi-calc's `syi.restatements`) are inputs outside the bucket clock: a request
moves its partition's position only and goes to the calculator's `restate`, whose revision is
written in a transaction of its own as soon as the batch it came in is taken in, with a
snapshot of the state after it (so a restart neither loses nor repeats it), before any close
that follows it; a refused request is dead-lettered with the calculator's reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from syi_shared import serde
from syi_shared.checkpoint import Checkpoint, CloseMark, close_record, snapshot_records
from syi_shared.dlq import dead_letter
from syi_shared.logs import get_logger
from syi_shared.models import ProgressMarker
from syi_shared.streaming.clock import BucketClock, ClockConfig, ClockState
from syi_shared.streaming.telemetry import StreamHealth, StreamMetrics
from syi_shared.timefmt import time_text
from syi_shared.topics import HOUR_MS, PROGRESS_TOPIC

# --------------------------------------------------------------------------- items


@dataclass(frozen=True)
class PartitionStart:
    """First item of every input partition: where reading (re)starts."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class OutMessage:
    """One message for the sink's transaction."""

    topic: str
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Arrival:
    """One input message after decoding; `value` is None when it is dead-lettered (`dead`)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    raw: bytes | None
    value: BaseModel | None
    dead: OutMessage | None = None


@dataclass(frozen=True)
class MarkerArrival:
    marker: ProgressMarker
    partition: int
    offset: int


@dataclass(frozen=True)
class Commit:
    """One Kafka transaction: `messages` to their topics, `state` records to the state topic."""

    messages: list[OutMessage]
    state: list[bytes]
    bucket_end_ms: int | None = None  # None: a snapshot on its own


@dataclass(frozen=True)
class Closed:
    """What a calculator publishes for one bucket: (topic, model) pairs, newest input time."""

    outputs: list[tuple[str, BaseModel]]
    newest_input_ms: int | None


class Calculator(Protocol):
    """A service's engine adapter, driven by `CalcStep`."""

    def bucket_end_of(self, topic: str, value: BaseModel) -> int: ...
    def event_ms(self, topic: str, value: BaseModel) -> int | None: ...
    # why a valid value is still not taken (its dead letter's reason, `kind: ...`), or None
    def refusal(self, topic: str, value: BaseModel) -> str | None: ...
    def observe(self, topic: str, value: BaseModel, position: tuple[int, int]) -> None: ...
    def ready(self, bucket_end_ms: int) -> bool: ...
    def close(self, bucket_end_ms: int) -> Closed: ...
    def close_degraded(self, bucket_end_ms: int, reason: str) -> Closed: ...
    # a request topic's value: what to publish now (a revision), or why it is refused (`kind: ...`)
    def restate(self, request: BaseModel, last_closed_ms: int | None) -> Closed | str: ...
    def state(self) -> dict[str, Any]: ...  # JSON-able, the checkpoint's `calculator`
    def continue_chain(self, last_cid: str | None) -> None: ...  # the output topic's chain tip
    # buckets up to `upto_ms` are on the output topic from a run whose state is lost
    def published_elsewhere(self, upto_ms: int) -> None: ...


# At most this many buckets close per step call: a calculator that fell behind catches up
# minute by minute (Bytewax calls back at once), its output and memory flat, never one long burst.
MAX_CLOSES_PER_CALL = 10
SNAPSHOT_EVERY_MS = HOUR_MS


@dataclass(frozen=True)
class StepConfig:
    service: str
    instance: str  # names the checkpoint (the state records' key) and the transactional id
    clock: ClockConfig
    make_calculator: Callable[[dict[str, Any] | None], Calculator]  # checkpointed state (None: fresh)
    broker_reachable: Callable[[float], bool] = lambda _now: True  # from the Kafka clients' callbacks
    request_topics: tuple[str, ...] = ()  # inputs outside the clock, for the calculator's `restate`


@dataclass
class Resume:
    """Where a run starts: the checkpoint's clock and calculator states (None: fresh), and what
    the output topic already holds (buckets up to `published_upto_ms` are never published again;
    the chain continues from `last_cid`)."""

    clock: dict[str, Any] | None = None
    calculator: dict[str, Any] | None = None
    published_upto_ms: int | None = None
    last_cid: str | None = None


def sink_message(topic: str, value: BaseModel) -> OutMessage:
    return OutMessage(topic, value.key().encode(), serde.dumps(value))  # type: ignore[attr-defined]


def dlq_message(
    topic: str, partition: int, offset: int, key: bytes | None, raw: bytes | None, reason: str, service: str
) -> OutMessage:
    """The dead letter of one input message, for `<topic>.dlq` under the original key."""
    letter = dead_letter(
        source_topic=topic, partition=partition, offset=offset, key=key, raw_value=raw, error=reason, service=service,
    )
    return OutMessage(f"{topic}.dlq", key, serde.dumps(letter))


def failure_reason(exc: BaseException) -> str:
    """`ExceptionType: message`, one line, short enough for a flag or a dead letter."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:200]


class CalcStep:
    """Clock + engine; `handle`/`tick`/`finish` return the transactions to write, in order.

    `silent=True` (a restore re-reading inputs up to the recorded closes) changes nothing but
    that nothing is returned: the same code rebuilds the same state."""

    def __init__(self, config: StepConfig, metrics: StreamMetrics, health: StreamHealth, resume: Resume | None,
                 now: float | None = None) -> None:
        now = time.time() if now is None else now
        resume = resume or Resume()
        clock_state = ClockState.from_dict(resume.clock) if resume.clock is not None else None
        self.config = config
        self.metrics = metrics
        self.health = health
        self.clock = BucketClock(config.clock, clock_state, now)
        self.calculator = config.make_calculator(resume.calculator)
        if resume.calculator is None and resume.published_upto_ms is not None:
            self.calculator.published_elsewhere(resume.published_upto_ms)
        self.published_upto_ms = resume.published_upto_ms
        self.topic_cid = resume.last_cid
        if resume.calculator is None:
            self.calculator.continue_chain(resume.last_cid)
        # else the checkpoint's own chain tip stands while a restore re-applies what followed it
        # (a revision re-applied there gets the cid it was published with); the restore then
        # continues from the topic's tip
        self.pending: list[OutMessage] = []  # dead letters waiting for the next close's transaction
        self.revisions: list[OutMessage] = []  # revisions waiting for their own transaction
        self.requests_taken = False  # requests handled (published or refused) since that transaction
        self.snapshot_ms: int | None = None  # bucket of this run's last snapshot (None: none yet)
        self.first_snapshot = True
        self.silent = False
        self.last_closed: Closed | None = None  # the newest close's result (a recomputation compares it)
        self.more_to_close = False
        self.log = get_logger(step="calc", service=config.service)  # worker threads miss the contextvars
        last = self.clock.state.last_closed_ms
        if last is not None:
            self.metrics.last_bucket_ms = last
            health.resumed(last)

    # --- what comes in

    def handle(self, items: Iterable[Any], now: float) -> list[Commit]:
        self._connection(now)
        self.replay(items, now)
        commits = self._restated()
        commits += self._close_ready(now)
        self.health.replaying = self.clock.replaying(now)
        return commits

    def replay(self, items: Iterable[Any], now: float) -> None:
        """Take items in without closing anything (a restore between recorded closes)."""
        for item in items:
            if isinstance(item, Arrival):
                self._arrival(item, now)
            elif isinstance(item, PartitionStart):
                self.clock.started((item.topic, item.partition), item.offset, now)
            elif isinstance(item, MarkerArrival):
                self.clock.read((PROGRESS, item.partition), item.offset + 1)
                self.clock.marker(item.marker, now)

    def tick(self, now: float) -> list[Commit]:
        self._connection(now)
        return self._close_ready(now)

    def finish(self, now: float) -> list[Commit]:
        """Bounded input ended: every partition is complete, close what is left."""
        return self._close_ready(now, eof=True, limit=None)

    def wake_at(self, now: float) -> float | None:
        if self.more_to_close:
            return now
        wake = self.clock.wake_at(now)
        if self.clock.disconnected_since is not None:  # look again soon: reconnection starts a grace
            wake = min(wake, now + 1.0) if wake is not None else now + 1.0
        return wake

    def _connection(self, now: float) -> None:
        # the BrokerWatch's probe logs the transitions; the clock only needs to know
        self.clock.connection(self.config.broker_reachable(now), now)

    def _arrival(self, item: Arrival, now: float) -> None:
        place = (item.topic, item.partition)
        if item.value is None:
            self.clock.arrived(place, item.offset, None, None, now)
            if item.dead is not None:
                self.pending.append(item.dead)
            return
        if item.topic in self.config.request_topics:
            self._request(item, now)
            return
        self.health.arrived(item.topic, now)
        calculator = self.calculator
        try:
            bucket = calculator.bucket_end_of(item.topic, item.value)
            late = self.clock.arrived(place, item.offset, bucket, calculator.event_ms(item.topic, item.value), now)
            refusal = calculator.refusal(item.topic, item.value)
            if refusal is not None:
                self._refused(item, refusal, now)
                return
            if not late:
                calculator.observe(item.topic, item.value, (item.partition, item.offset))
                return
        except Exception as exc:  # noqa: BLE001 (one message must not stop the index)
            self.clock.arrived(place, item.offset, None, None, now)
            reason = f"processing_error: {failure_reason(exc)}"
            self._dead(item, reason, "processing_error")
            if not self.silent:
                self.log.exception("processing_error", topic=item.topic, partition=item.partition, offset=item.offset)
            return
        last = self.clock.state.last_closed_ms
        reason = f"late: bucket {time_text(bucket)} was already closed (last closed {time_text(last)})"  # type: ignore[arg-type]
        self._dead(item, reason, "late")
        if not self.silent:
            self.metrics.late.labels(self.config.service, item.topic).inc()
            with self.health.lock:
                self.health.late_items += 1
            self.log.warning("late", topic=item.topic, partition=item.partition, offset=item.offset, bucket=time_text(bucket))

    def _request(self, item: Arrival, now: float) -> None:
        # Outside the clock: no bucket, no event time; only where the partition was read to.
        self.clock.arrived((item.topic, item.partition), item.offset, None, None, now)
        self.requests_taken = not self.silent
        try:
            outcome = self.calculator.restate(item.value, self.clock.state.last_closed_ms)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 (one request must not stop the index)
            self._dead(item, f"processing_error: {failure_reason(exc)}", "processing_error")
            if not self.silent:
                self.log.exception("processing_error", topic=item.topic, partition=item.partition, offset=item.offset)
            return
        if isinstance(outcome, str):
            # An operator's request that does not apply (stale, unknown bucket): a dead letter
            # says why; the service itself is fine, so its health does not change.
            self._dead(item, outcome, outcome.split(":", 1)[0])
            if not self.silent:
                self.log.warning("restatement_refused", offset=item.offset, reason=outcome)
            return
        if self.silent:
            return  # a restore re-applies it to the state; it is on the topic already
        service = self.config.service
        for topic, value in outcome.outputs:
            self.revisions.append(sink_message(topic, value))
            self.metrics.published.labels(service, topic).inc()
            self.log.info("restated", topic=topic, bucket=getattr(value, "bucket_end", None),
                          revision=getattr(value, "revision", None), cid=getattr(value, "cid", None))

    def _restated(self) -> list[Commit]:
        """The revisions taken in since the last call, in one transaction with the dead letters
        read so far (refused requests among them) and a snapshot of the state after them: a
        restart resumes past their requests (never publishing them twice), a crash before the
        commit loses nothing (their requests are read again), and an idle index does not hold
        them back until its next close."""
        if not self.requests_taken:
            return []
        self.requests_taken = False
        messages, self.revisions = self.revisions, []
        dead, self.pending = self.pending, []
        return [Commit([*messages, *dead], snapshot_records(self._checkpoint()))]

    def _refused(self, item: Arrival, reason: str, now: float) -> None:
        # A valid value the calculator will not take (syi-calc: another methodology_version):
        # dead-lettered under its reason, and /healthz degraded while such values keep coming.
        kind = reason.split(":", 1)[0]
        self._dead(item, reason, kind)
        if not self.silent:
            self.health.refused(reason, now)
            self.log.warning("refused", topic=item.topic, partition=item.partition, offset=item.offset, reason=reason)

    def _dead(self, item: Arrival, reason: str, kind: str) -> None:
        if not self.silent:
            self.metrics.dead.labels(self.config.service, item.topic, kind).inc()
        self.pending.append(dlq_message(item.topic, item.partition, item.offset, item.key, item.raw, reason,
                                        self.config.service))

    # --- what goes out

    def _close_ready(self, now: float, eof: bool = False, limit: int | None = MAX_CLOSES_PER_CALL) -> list[Commit]:
        commits: list[Commit] = []
        self.more_to_close = False
        while True:
            t = self.clock.next_bucket()
            if t is None or not self.clock.may_close(t, now, eof) or not self.calculator.ready(t):
                return commits
            if limit is not None and len(commits) >= limit:
                self.more_to_close = True
                return commits
            commits.extend(self.close(t, now))

    def close(self, t: int, now: float) -> list[Commit]:
        """Close bucket t: its transaction, after a snapshot when one is due.

        A snapshot is the state just before the close (with the positions read so far), so
        it is a valid place to resume whether or not the close's own transaction follows;
        the dead letters read so far go in the snapshot's transaction, since its positions
        are past them. A run's first snapshot shares the first close's transaction."""
        before: list[Commit] = []
        if not self.silent and (self.snapshot_ms is None or t - self.snapshot_ms >= SNAPSHOT_EVERY_MS):
            dead, self.pending = self.pending, []
            before = [Commit(dead, self.snapshot(t))]
        try:
            result = self.calculator.close(t)
        except Exception as exc:  # noqa: BLE001 (one bucket must not stop the index)
            reason = failure_reason(exc)
            if not self.silent:
                self.metrics.degraded.labels(self.config.service).inc()
                self.log.exception("close_failed", bucket=time_text(t))
                with self.health.lock:
                    self.health.failed_closes += 1
            try:
                result = self.calculator.close_degraded(t, reason)
            except Exception:  # noqa: BLE001
                self.log.exception("degraded_close_failed", bucket=time_text(t))
                result = Closed([], None)
        self.clock.closed(t)
        self.last_closed = result
        dead, self.pending = self.pending, []
        if self.silent:
            return []
        if self.published_upto_ms is not None and t <= self.published_upto_ms:
            # Already on the output topic (a run that lost its checkpoint): never published
            # twice, nor its dead letters; the chain goes on from the topic's tip.
            messages: list[OutMessage] = []
            dead = []
            self.calculator.continue_chain(self.topic_cid)
        else:
            messages = self._outputs(t, result, now)
        mark = CloseMark(self.config.service, self.config.instance, t, self.clock.positions(), len(messages))
        commit = Commit([*messages, *dead], [close_record(mark)], t)
        if before and self.first_snapshot:
            self.first_snapshot = False
            return [Commit([*before[0].messages, *commit.messages], [*before[0].state, *commit.state], t)]
        return [*before, commit]

    def snapshot(self, t: int) -> list[bytes]:
        """The state before closing bucket t (`bucket_end_ms`: the last bucket closed before it)."""
        self.snapshot_ms = t
        return snapshot_records(self._checkpoint())

    def _checkpoint(self) -> Checkpoint:
        """The state now, with the positions read so far (`bucket_end_ms`: the last bucket closed)."""
        return Checkpoint(
            service=self.config.service, instance=self.config.instance, bucket_end_ms=self.clock.state.last_closed_ms,
            input_offsets=self.clock.positions(), clock=self.clock.state.to_dict(), calculator=self.calculator.state(),
        )

    def _outputs(self, t: int, closed: Closed, now: float) -> list[OutMessage]:
        # Locators (not hashed, docs/topics.md): where the inputs were read up to, what was quiet.
        locators = {
            "input_offsets": self.clock.input_offsets(),
            "close_notes": [f"idle:{topic}/{partition}" for topic, partition in self.clock.quiet_partitions(now)],
        }
        service, wall = self.config.service, time.time()
        messages = []
        for topic, value in closed.outputs:
            fields = type(value).model_fields
            if update := {name: data for name, data in locators.items() if name in fields}:
                value = value.model_copy(update=update)
            messages.append(sink_message(topic, value))
            self.metrics.published.labels(service, topic).inc()
            self.metrics.saw(topic, t)
        self.metrics.emit_delay.labels(service).observe(max(0.0, wall - t / 1000))
        if closed.newest_input_ms is not None:
            self.metrics.latency.labels(service).observe(max(0.0, wall - closed.newest_input_ms / 1000))
        self.metrics.last_bucket_ms = t
        self.health.closed(t)
        self.log.debug("bucket_closed", bucket=time_text(t), outputs=len(messages), notes=locators["close_notes"])
        return messages


PROGRESS = PROGRESS_TOPIC.name
