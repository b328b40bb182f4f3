"""Streaming plumbing shared by the two Bytewax calculators (ray-calc, syi-calc).

docs/streaming.md explains the design; in short:

* One Kafka source over the step's input topics plus `syi.progress`. Each input partition
  first announces where it starts (`PartitionStart`), then its messages.
* A stateless `decode` step (on whichever worker reads the partition) validates each
  message; a bad one goes to `<topic>.dlq` and leaves only its position behind.
* One stateful step under a constant key owns the calculation engine, so the engines'
  cross-symbol state lives in one place. `BucketClock` decides when a minute bucket may
  close: every input partition of a clocked topic has passed `t + allowed lateness` in
  event time or is idle (nothing for `idle_timeout` seconds), or a tape player's progress
  marker says that everything before `t` has been produced and the step has read that far.
  A message for a bucket that is already closed is late: counted and dead-lettered.
* The tape player's side of the marker convention is `ProgressAnnouncer`.

Importing this module needs bytewax (a dependency of the two calculators, not of syi-shared).
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import orjson
from bytewax import operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSink, KafkaSinkMessage, KafkaSource, KafkaSourceMessage
from bytewax.connectors.kafka import _KafkaSourcePartition  # noqa: PLC2701 (0.21.1 is the last release; pinned)
from bytewax.dataflow import Dataflow
from bytewax.inputs import StatefulSourcePartition
from bytewax.operators import StatefulBatchLogic
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as ConfluentKafkaError
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict, Field

from syi_shared import metric_names, serde
from syi_shared.admin import provision_topics
from syi_shared.broker_watch import BrokerWatch
from syi_shared.health import HealthReport, InputWatch, broker_health, broker_watch
from syi_shared.codec import DecodeError, decode_value
from syi_shared.dlq import dead_letter
from syi_shared.kafka import PRODUCER_DEFAULTS, make_producer
from syi_shared.logs import get_logger
from syi_shared.methodology.engine import BUCKET_MS
from syi_shared.methodology.engine import bucket_of as bucket_end_of  # the END (ms) of an event's minute bucket
from syi_shared.metrics import counter, gauge, histogram
from syi_shared.models import UtcTime
from syi_shared.settings import ServiceSettings
from syi_shared.telemetry import serve_telemetry
from syi_shared.timefmt import millis, now_text, time_text
from syi_shared.topics import DAY_MS, Topic

RAW_INPUT_TOPICS = ("cc.prices", "cc.orderbook", "dl.apy", "ex.mktcap", "trad.tbill")
PartitionId = tuple[str, int]

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
# Set on SIGTERM/SIGINT: every input partition then ends (StopIteration), Bytewax drains the
# flow, takes its last snapshot and returns; the stateful step closes nothing more on that EOF.
STOP = threading.Event()


# --------------------------------------------------------------------------- settings


class StreamSettings(ServiceSettings):
    """Settings both calculators share (env prefix SYI_); each service subclasses it."""

    metrics_port: int = 0  # /healthz and /metrics (ours + Bytewax's step metrics); 0 = none
    bytewax_api_port: int = 0  # Bytewax's own API, read by our /metrics; 0 = any free port
    workers: int = Field(default=1, ge=1)  # Bytewax worker threads (-w)
    recovery_dir: Path | None = None  # Bytewax recovery store; created when absent
    snapshot_interval_seconds: float = Field(default=5.0, gt=0)  # -s: epoch length and snapshot cadence
    backup_interval_seconds: float = Field(default=0.0, ge=0)  # -b: keep older snapshots this long
    allowed_lateness_seconds: float = Field(default=2.0, ge=0)
    idle_timeout_seconds: float = Field(default=10.0, gt=0)  # a partition silent this long stops holding buckets
    progress_timeout_seconds: float = Field(default=30.0, gt=0)  # a replay's markers keep idleness off this long
    start_at_ms: int | None = None  # without a snapshot: read messages appended at/after this (Kafka time)
    tail: bool = True  # False: stop at the end of the topics (backfills, tests)
    batch_size: int = Field(default=1000, ge=1)
    stop_timeout_seconds: float = Field(default=20.0, gt=0)  # after SIGTERM, exit anyway after this

    def brokers(self) -> list[str]:
        return self.kafka_config()["bootstrap.servers"].split(",")


# --------------------------------------------------------------------------- progress markers

PROGRESS_TOPIC_NAME = "syi.progress"


class ProgressMarker(BaseModel):
    """A value on `syi.progress`: every message with event_time < `upto` has been produced
    to the listed partitions, which ended at `offsets` (next offset, per topic and partition)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: Literal[1] = 1
    source: str
    upto: UtcTime
    offsets: dict[str, dict[str, int]]
    run_start: UtcTime | None = None  # event time of the run's first message (its first bucket)
    final: bool = False  # the run is complete: nothing more will come from this source
    announced_at: UtcTime

    def key(self) -> str:
        return self.source


# Not in the registry (topics.TOPICS holds the data topics); created by the calculators and
# the announcer. One partition keeps markers in order.
PROGRESS_TOPIC = Topic(PROGRESS_TOPIC_NAME, ProgressMarker, "{source}", 1, "delete", 7 * DAY_MS, "tape player")


def ensure_progress_topic(settings: ServiceSettings, timeout: float = 30.0) -> None:
    """Create `syi.progress` if absent and wait until the metadata shows it (two calculators
    starting together: one creates it, the other must not list it before it is visible)."""
    provision_topics(settings, topics=[PROGRESS_TOPIC])
    admin = AdminClient(settings.kafka_config())
    deadline = time.monotonic() + timeout
    while True:
        found = admin.list_topics(PROGRESS_TOPIC_NAME, timeout=timeout).topics.get(PROGRESS_TOPIC_NAME)
        if found is not None and found.error is None and found.partitions:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{PROGRESS_TOPIC_NAME} not visible on the broker after {timeout} s")
        time.sleep(0.2)


_NOT_READY = {
    ConfluentKafkaError.NOT_LEADER_FOR_PARTITION, ConfluentKafkaError.LEADER_NOT_AVAILABLE,
    ConfluentKafkaError.UNKNOWN_TOPIC_OR_PART, ConfluentKafkaError._TRANSPORT, ConfluentKafkaError.REQUEST_TIMED_OUT,
}

T = TypeVar("T")


def retry_until_ready(call: Callable[[], T], timeout: float = 30.0) -> T:
    """Retry while partitions have no leader yet (right after topics were created)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException as exc:
            if exc.args[0].code() not in _NOT_READY or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def high_watermarks(admin: AdminClient, topics: Iterable[str], timeout: float = 30.0) -> dict[str, dict[str, int]]:
    """Next offset of every partition of `topics` (what a marker promises has been delivered)."""
    metadata = admin.list_topics(timeout=timeout)
    wanted = {
        TopicPartition(name, partition): OffsetSpec.latest()
        for name in topics
        if name in metadata.topics
        for partition in metadata.topics[name].partitions
    }

    def read() -> dict[str, dict[str, int]]:
        offsets: dict[str, dict[str, int]] = {}
        for place, future in admin.list_offsets(wanted, request_timeout=timeout).items():
            offsets.setdefault(place.topic, {})[str(place.partition)] = future.result().offset
        return offsets

    return retry_until_ready(read, timeout)


class ProgressAnnouncer:
    """The tape player's half of the marker convention (docs/streaming.md "Progress markers").

    Call `before(event_ms)` before producing each message (tape order is event-time order),
    and `finish(last_event_ms)` after the last one. The announcer flushes the player's
    producer, reads the partitions' end offsets and produces a marker when the tape crosses a
    minute boundary (at most every `min_interval` s) or `heartbeat` s have passed.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        producer: Any,
        topics: Sequence[str] = RAW_INPUT_TOPICS,
        source: str = "tape",
        min_interval: float = 0.2,
        heartbeat: float = 2.0,
    ) -> None:
        self.producer = producer
        self.topics = tuple(topics)
        self.source = source
        self.min_interval = min_interval
        self.heartbeat = heartbeat
        self.admin = AdminClient(settings.kafka_config())
        self.announced = 0
        self._first_ms: int | None = None
        self._last_upto: int | None = None
        self._last_at = 0.0
        ensure_progress_topic(settings)

    def before(self, event_ms: int) -> None:
        now = time.monotonic()
        if self._first_ms is None:
            self._first_ms = event_ms
            self.announce(event_ms, run_start_ms=event_ms)
            return
        if self._last_upto is not None and event_ms < self._last_upto:
            return  # out of event-time order: announcing a smaller `upto` would add nothing
        crossed = bucket_end_of(event_ms) > bucket_end_of(self._last_upto or event_ms)
        if (crossed and now - self._last_at >= self.min_interval) or now - self._last_at >= self.heartbeat:
            self.announce(event_ms)

    def finish(self, last_event_ms: int | None, final: bool = True) -> None:
        """After the last message: its bucket may close. `final` ends the replay (idleness
        counts again); pass False when more of the same replay follows (e.g. windows)."""
        if last_event_ms is not None:
            self.announce(bucket_end_of(last_event_ms), final=final, run_start_ms=self._first_ms)

    def announce(self, upto_ms: int, final: bool = False, run_start_ms: int | None = None) -> ProgressMarker:
        remaining = self.producer.flush(60)
        if remaining:
            raise RuntimeError(f"{remaining} messages still undelivered: cannot announce progress")
        marker = ProgressMarker(
            source=self.source,
            upto=time_text(upto_ms),
            offsets=high_watermarks(self.admin, self.topics),
            run_start=time_text(run_start_ms) if run_start_ms is not None else None,
            final=final,
            announced_at=now_text(),
        )
        self.producer.produce(PROGRESS_TOPIC_NAME, key=marker.key().encode(), value=serde.dumps(marker))
        self.producer.flush(60)
        self._last_upto = upto_ms
        self._last_at = time.monotonic()
        self.announced += 1
        return marker


def announce_progress(
    settings: ServiceSettings,
    upto_ms: int,
    final: bool = False,
    run_start_ms: int | None = None,
    source: str = "tape",
) -> ProgressMarker:
    """One marker from outside a player, e.g. after `play_tape` returned (it flushed)."""
    announcer = ProgressAnnouncer(settings, make_producer(settings), source=source)
    return announcer.announce(upto_ms, final=final, run_start_ms=run_start_ms)


# --------------------------------------------------------------------------- items in the flow


@dataclass(frozen=True)
class PartitionStart:
    """First item of every input partition: where reading (re)starts."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Arrival:
    """One input message after decoding; `value` is None when it went to the DLQ."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    raw: bytes | None
    value: BaseModel | None


@dataclass(frozen=True)
class MarkerArrival:
    marker: ProgressMarker


# --------------------------------------------------------------------------- source


class _AnnouncingPartition(StatefulSourcePartition[Any, int | None]):
    """A Kafka partition that first says where it starts, so the clock can judge markers."""

    def __init__(self, inner: _KafkaSourcePartition, start: PartitionStart) -> None:
        self._inner = inner
        self._start: PartitionStart | None = start

    def next_batch(self) -> list[Any]:
        if STOP.is_set():
            raise StopIteration  # a requested stop: end the input cleanly
        if self._start is not None:
            start, self._start = self._start, None
            return [start]
        return self._inner.next_batch()

    def snapshot(self) -> int | None:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class InputSource(KafkaSource):
    """KafkaSource whose partitions announce their start offset; without a resume state they
    start at the first message appended at/after `start_at_ms` (Kafka time), if given."""

    def __init__(self, brokers: list[str], topics: list[str], start_at_ms: int | None = None, **kwargs: Any) -> None:
        super().__init__(brokers, topics, **kwargs)
        self._start_at_ms = start_at_ms

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _AnnouncingPartition:
        index, topic = for_part.split("-", 1)
        partition = int(index)
        config = {
            "group.id": "BYTEWAX_IGNORED",
            "enable.auto.commit": "false",
            "bootstrap.servers": ",".join(self._brokers),
            "enable.partition.eof": str(not self._tail),
            "statistics.interval.ms": 1000,
            **self._add_config,
        }
        offset = resume_state if resume_state is not None else self._first_offset(config, topic, partition)
        inner = _KafkaSourcePartition(
            step_id, dict(config), topic, partition, offset, None, self._batch_size, self._raise_on_errors
        )
        return _AnnouncingPartition(inner, PartitionStart(topic, partition, offset))

    def _first_offset(self, config: dict[str, Any], topic: str, partition: int) -> int:
        probe = Consumer({k: v for k, v in config.items() if k != "statistics.interval.ms"})
        try:
            place = TopicPartition(topic, partition)
            low, high = retry_until_ready(lambda: probe.get_watermark_offsets(place, timeout=30))
            if self._start_at_ms is None or self._starting_offset != OFFSET_BEGINNING:
                return low
            at = TopicPartition(topic, partition, self._start_at_ms)
            found = retry_until_ready(lambda: probe.offsets_for_times([at], timeout=30)[0])
            return found.offset if found.offset >= 0 else high
        finally:
            probe.close()


# --------------------------------------------------------------------------- metrics, health


class StreamMetrics:
    """The calculators' shared metrics (names from metric_names), labelled by service."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.consumed = counter(metric_names.MESSAGES_CONSUMED, "Input messages read", ("service", "topic"))
        self.published = counter(metric_names.MESSAGES_PUBLISHED, "Messages produced, by topic", ("service", "topic"))
        self.dead = counter(metric_names.DEAD_LETTERS, "Messages sent to a DLQ", ("service", "topic", "reason"))
        self.late = counter(metric_names.LATE_ITEMS, "Inputs for an already closed bucket", ("service", "topic"))
        self.degraded = counter(metric_names.DEGRADED_BUCKETS, "Buckets whose calculation failed, published degraded",
                                ("service",))
        self.emit_delay = histogram(
            metric_names.BUCKET_EMIT_DELAY, "Publish time minus bucket end", ("service",),
            buckets=(0.5, 1, 2, 3, 5, 10, 30, 60, 120, 300, 900, 3600),
        )
        self.latency = histogram(
            metric_names.CALCULATION_LATENCY, "Newest input event time to publish", ("service",),
            buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 120, 300, 900, 3600),
        )
        self.freshness = gauge(metric_names.FRESHNESS, "Now minus the newest published bucket end", ("service",))
        self.newest_event = gauge(
            metric_names.NEWEST_EVENT, "Event time (outputs: bucket end) of the newest value handled", ("service", "topic")
        )
        self.last_bucket_ms: int | None = None
        self.freshness.labels(service).set_function(self._freshness)
        self._newest: dict[str, int] = {}

    def saw(self, topic: str, event_ms: int) -> None:
        if event_ms > self._newest.get(topic, 0):
            self._newest[topic] = event_ms
            self.newest_event.labels(self.service, topic).set(event_ms / 1000)

    def _freshness(self) -> float:
        return time.time() - self.last_bucket_ms / 1000 if self.last_bucket_ms is not None else float("nan")


@dataclass
class StreamHealth:
    """What /healthz reports; written by the stateful step, read by the HTTP thread.

    `degraded` (docs/operations.md) when no broker is reachable, when an input has been silent
    for longer than its topic's cadence, or when the last closed bucket lags the wall clock by
    more than `LAG_LIMIT_S` (not while a replay's markers are in charge: a replay is behind by
    design)."""

    service: str
    inputs: InputWatch | None = None  # the input topics against their cadences
    broker: BrokerWatch | None = None
    started: float = field(default_factory=time.time)
    last_closed_ms: int | None = None
    closed_at: float | None = None
    buckets_closed: int = 0
    late_items: int = 0
    failed_closes: int = 0
    replaying: bool = False  # a tape replay's progress markers are in charge (idleness off)
    lock: threading.Lock = field(default_factory=threading.Lock)

    LAG_LIMIT_S = 120.0
    START_GRACE_S = 180.0  # no bucket closed this long after start is news

    def closed(self, bucket_ms: int) -> None:
        with self.lock:
            self.last_closed_ms, self.closed_at = bucket_ms, time.time()
            self.buckets_closed += 1

    def resumed(self, bucket_ms: int) -> None:
        with self.lock:
            self.last_closed_ms = bucket_ms

    def arrived(self, topic: str, now: float) -> None:
        if self.inputs is not None:
            self.inputs.seen(topic, now)

    def lag(self, now: float) -> HealthReport:
        """The calculator's own progress against the wall clock."""
        if self.replaying:
            return HealthReport()
        if self.last_closed_ms is not None:
            behind = now - self.last_closed_ms / 1000
            if behind > self.LAG_LIMIT_S:
                return HealthReport.degraded(
                    f"lag: last closed bucket {time_text(self.last_closed_ms)} is {behind:.0f} s behind the wall clock")
        elif now - self.started > self.START_GRACE_S:
            return HealthReport.degraded(f"lag: no bucket closed in {now - self.started:.0f} s since start")
        return HealthReport()

    def report(self) -> HealthReport:
        now = time.time()
        with self.lock:
            parts = [broker_health(self.broker, now), self.lag(now)]
            if self.inputs is not None and not self.replaying:
                parts.append(self.inputs.check(now))
            return HealthReport.combine(
                *parts,
                service=self.service,
                uptime_seconds=round(now - self.started, 1),
                last_closed_bucket=time_text(self.last_closed_ms) if self.last_closed_ms is not None else None,
                seconds_since_close=round(now - self.closed_at, 1) if self.closed_at else None,
                buckets_closed=self.buckets_closed,
                late_items=self.late_items,
                failed_closes=self.failed_closes,
                replaying=self.replaying,
            )


class WithBytewaxMetrics:
    """A registry-like collector for /metrics: ours plus Bytewax's per-step metrics, read from
    Bytewax's own API (which serves the Python registry too, so those are skipped there).
    Bytewax's Kafka lag is also given under the guide's name `kafka_consumer_lag`."""

    def __init__(self, api_port: int | None, group: str) -> None:
        self.url = f"http://127.0.0.1:{api_port}/metrics" if api_port else None
        self.group = group

    def collect(self) -> Iterator[Any]:
        ours = list(REGISTRY.collect())
        yield from ours
        yield self._lag(ours)
        if self.url is None:
            return
        try:
            with urllib.request.urlopen(self.url, timeout=2) as response:  # noqa: S310 (loopback)
                text = response.read().decode()
        except OSError:
            return
        names = {family.name for family in ours}
        for family in text_string_to_metric_families(text):
            if family.name.startswith("bytewax_") and family.name not in names:
                yield family

    def _lag(self, families: list[Any]) -> GaugeMetricFamily:
        lag = GaugeMetricFamily(
            metric_names.KAFKA_CONSUMER_LAG, "Messages behind the partition end", labels=("group", "topic", "partition")
        )
        for family in families:
            if family.name == "bytewax_kafka_consumer_lag":
                for sample in family.samples:
                    lag.add_metric((self.group, sample.labels["topic"], sample.labels["partition"]), sample.value)
        return lag


# --------------------------------------------------------------------------- the bucket clock


@dataclass
class PartitionProgress:
    next_offset: int | None = None  # first offset not delivered yet
    max_event_ms: int | None = None  # newest event time delivered (clocked topics)


@dataclass
class PendingMarker:
    upto_ms: int
    offsets: dict[PartitionId, int]
    final: bool
    run_start_ms: int | None


@dataclass
class ClockState:
    """The clock's memory, snapshotted with the engine's."""

    partitions: dict[PartitionId, PartitionProgress] = field(default_factory=dict)
    first_bucket_ms: int | None = None  # smallest bucket seen before the first close
    last_closed_ms: int | None = None
    max_bucket_ms: int | None = None  # bucket of the newest input seen
    markers: list[PendingMarker] = field(default_factory=list)  # received, not yet reached
    marker_upto_ms: int | None = None  # everything with event_time < this has been read
    replay_until_ms: int | None = None  # wall time until which a replay's markers keep idleness off


@dataclass(frozen=True)
class ClockConfig:
    input_topics: tuple[str, ...]
    clocked_topics: tuple[str, ...]  # topics whose partitions' event time (or idleness) gates buckets
    partitions: tuple[PartitionId, ...]  # every partition of the input topics
    lateness_ms: int
    idle_timeout_s: float
    progress_timeout_ms: int
    skew_ms: int = 5_000  # live: how far ahead of the wall clock a partition's progress may count
    reconnect_grace_s: float = 15.0  # after the broker is back, idleness waits this long for the backlog
    quiet_note_after_ms: dict[str, int] = field(default_factory=dict)  # topic -> silence worth a close note


class BucketClock:
    """Decides when a bucket may close (pure: the caller passes the wall clock in seconds).

    Live (no replay's progress markers in charge), the wall clock bounds the event time
    (docs/streaming.md, "The live clock"): no bucket closes before the wall clock passes its
    end plus the lateness, no partition's progress counts beyond the wall clock plus `skew_ms`,
    and idleness releases nothing while the broker is unreachable nor for `reconnect_grace_s`
    after it is back (the backlog produced meanwhile is on its way). Replays at speed are
    governed by markers and event time alone.
    """

    def __init__(self, config: ClockConfig, state: ClockState | None, now: float) -> None:
        self.config = config
        self.state = state or ClockState()
        for place in config.partitions:
            self.state.partitions.setdefault(place, PartitionProgress())
        # Idleness is system time, never snapshotted: after a restart every partition gets a
        # fresh idle_timeout (partitions that never deliver count as idle after it).
        self.last_seen: dict[PartitionId, float] = {place: now for place in config.partitions}
        # Idle timers of partitions that have not delivered yet start with the first message
        # (not at start-up), so a flow that waited for its first input does not begin with
        # every partition idle.
        self.active_since: float | None = None
        self.disconnected_since: float | None = None  # the broker is unreachable since then
        self.quiet_until = 0.0  # no release by idleness before this (reconnect grace)
        self._clocked = [place for place in config.partitions if place[0] in config.clocked_topics]

    # --- what arrives

    def started(self, place: PartitionId, offset: int, now: float) -> None:
        progress = self.state.partitions.setdefault(place, PartitionProgress())
        progress.next_offset = max(progress.next_offset or 0, offset)
        self.last_seen[place] = now
        self._apply_markers()

    def arrived(self, place: PartitionId, offset: int, bucket_ms: int | None, event_ms: int | None, now: float) -> bool:
        """Record one message; True when it is late (its bucket has already closed)."""
        progress = self.state.partitions.setdefault(place, PartitionProgress())
        progress.next_offset = max(progress.next_offset or 0, offset + 1)
        self.last_seen[place] = now
        if self.active_since is None:
            self.active_since = now
        self._apply_markers()
        if bucket_ms is None:
            return False
        state = self.state
        if state.last_closed_ms is not None and bucket_ms <= state.last_closed_ms:
            return True
        if not self.replaying(now):
            # A message stamped in the future is kept (its bucket will come), but it moves the
            # clock only as far as the wall clock allows: one bad stamp cannot drag the index on.
            horizon = self._horizon_ms(now)
            event_ms = min(event_ms, horizon) if event_ms is not None else None
            bucket_ms = min(bucket_ms, bucket_end_of(horizon))
        if event_ms is not None and place[0] in self.config.clocked_topics:
            progress.max_event_ms = max(progress.max_event_ms or event_ms, event_ms)
        state.max_bucket_ms = max(state.max_bucket_ms or bucket_ms, bucket_ms)
        if state.last_closed_ms is None:
            state.first_bucket_ms = min(state.first_bucket_ms or bucket_ms, bucket_ms)
        return False

    def connection(self, reachable: bool, now: float) -> None:
        """The broker's reachability as the service's Kafka clients see it."""
        if not reachable:
            if self.disconnected_since is None:
                self.disconnected_since = now
        elif self.disconnected_since is not None:
            self.disconnected_since = None
            self.quiet_until = now + self.config.reconnect_grace_s
            for place in self.last_seen:  # silence while we could not read was not the sources'
                self.last_seen[place] = max(self.last_seen[place], now)

    def marker(self, marker: ProgressMarker, now: float) -> None:
        offsets = {
            (topic, int(partition)): offset
            for topic, partitions in marker.offsets.items()
            if topic in self.config.input_topics
            for partition, offset in partitions.items()
        }
        self.state.markers.append(PendingMarker(
            millis(marker.upto), offsets, marker.final, millis(marker.run_start) if marker.run_start else None
        ))
        if not marker.final:
            # A replay is running: from now on only event time and markers close buckets,
            # never idleness, so a slow or stalled read cannot make a sparse input late.
            until = millis(marker.announced_at) + self.config.progress_timeout_ms
            self.state.replay_until_ms = max(self.state.replay_until_ms or until, until)
        self._apply_markers()

    def _apply_markers(self) -> None:
        state = self.state
        while state.markers and self._reached(state.markers[0]):
            done = state.markers.pop(0)
            state.marker_upto_ms = max(state.marker_upto_ms or done.upto_ms, done.upto_ms)
            if done.run_start_ms is not None and state.last_closed_ms is None:
                start = bucket_end_of(done.run_start_ms)
                state.first_bucket_ms = min(state.first_bucket_ms or start, start)
            if done.final:
                state.replay_until_ms = None

    def _reached(self, marker: PendingMarker) -> bool:
        for place, offset in marker.offsets.items():
            if offset <= 0:
                continue
            progress = self.state.partitions.get(place)
            if progress is None or progress.next_offset is None or progress.next_offset < offset:
                return False
        return True

    # --- what may close

    def next_bucket(self) -> int | None:
        state = self.state
        if state.last_closed_ms is not None:
            return state.last_closed_ms + BUCKET_MS
        return state.first_bucket_ms

    def replaying(self, now: float) -> bool:
        until = self.state.replay_until_ms
        return until is not None and now * 1000 < until

    def _horizon_ms(self, now: float) -> int:
        return int(now * 1000) + self.config.skew_ms

    def _max_bucket(self, now: float) -> int | None:
        """Bucket of the newest input, live never beyond the wall clock's (a restored snapshot
        may still hold a future stamp)."""
        newest = self.state.max_bucket_ms
        if newest is None or self.replaying(now):
            return newest
        return min(newest, bucket_end_of(self._horizon_ms(now)))

    def _newest(self, place: PartitionId, now: float) -> int | None:
        newest = self.state.partitions[place].max_event_ms
        if newest is None or self.replaying(now):
            return newest
        return min(newest, self._horizon_ms(now))

    def idle_allowed(self, now: float, eof: bool = False) -> bool:
        """Whether silence may release buckets now: not during a replay, not while the broker
        is unreachable, not during the grace after it came back."""
        if eof:
            return True
        return not self.replaying(now) and self.disconnected_since is None and now >= self.quiet_until

    def may_close(self, t: int, now: float, eof: bool = False) -> bool:
        state = self.state
        if state.marker_upto_ms is not None and t <= state.marker_upto_ms:
            return True  # a progress marker: every input before t has been read
        live = not self.replaying(now)
        if live and not eof and now * 1000 < t + self.config.lateness_ms:
            return False  # the live clock: never before the bucket's end plus the lateness
        newest_bucket = self._max_bucket(now)
        if newest_bucket is None or t > newest_bucket:
            return False  # never past the newest input (all sources idle = nothing new to say)
        idle_allowed = self.idle_allowed(now, eof)
        for place in self._clocked:
            newest = self._newest(place, now)
            if newest is not None and newest - self.config.lateness_ms >= t:
                continue
            if idle_allowed and (eof or now >= self._idle_at(place) or now >= self._passes_at(place, t, now)):
                continue
            return False
        return True

    def _passes_at(self, place: PartitionId, t: int, now: float) -> float:
        """When a quiet partition's watermark, advancing with the wall clock since its last
        message (Bytewax's EventClock rule), passes bucket t plus the lateness. Live sources
        stamp event time on receipt, so a quiet feed releases a minute about `lateness` after
        its end instead of holding it for the whole idle timeout."""
        newest = self._newest(place, now)
        if newest is None:
            return float("inf")
        return self.last_seen[place] + (t + self.config.lateness_ms - newest) / 1000

    def closed(self, t: int) -> None:
        self.state.last_closed_ms = t

    def _idle_at(self, place: PartitionId) -> float:
        return max(self.last_seen[place], self.active_since or 0.0) + self.config.idle_timeout_s

    def wake_at(self, now: float) -> float | None:
        """When the wall clock (idleness, the live clock, the end of a replay or of the
        reconnect grace) could let the next bucket close."""
        t = self.next_bucket()
        if t is None or self.state.max_bucket_ms is None or t > self.state.max_bucket_ms:
            return None
        times = []
        newest_bucket = self._max_bucket(now)
        if newest_bucket is not None and t > newest_bucket:  # capped by the wall clock: wait for it
            times.append((t - BUCKET_MS - self.config.skew_ms) / 1000)
        if not self.replaying(now):
            times.append((t + self.config.lateness_ms) / 1000)
        if self.disconnected_since is None:
            times.append(self.quiet_until)
            times += [min(self._idle_at(place), self._passes_at(place, t, now)) for place in self._clocked]
        if self.replaying(now):
            times.append(self.state.replay_until_ms / 1000)  # type: ignore[operator]
        later = [at for at in times if at > now]
        return min(later) if later else None

    def input_offsets(self) -> dict[str, dict[str, int]]:
        """Per input partition, the offset up to which (exclusive) it has been read."""
        offsets: dict[str, dict[str, int]] = {}
        for (topic, partition), progress in sorted(self.state.partitions.items()):
            if progress.next_offset is not None and topic in self.config.input_topics:
                offsets.setdefault(topic, {})[str(partition)] = progress.next_offset
        return offsets

    def quiet_partitions(self, now: float) -> list[PartitionId]:
        """Clocked partitions that have delivered before but have been silent for longer than
        their topic's cadence (the normal quiet of hourly or daily inputs is not news)."""
        quiet = []
        for place in self._clocked:
            limit = self.config.quiet_note_after_ms.get(place[0])
            if limit is None or self.state.partitions[place].max_event_ms is None:
                continue
            if (now - self.last_seen[place]) * 1000 > limit:
                quiet.append(place)
        return quiet


# --------------------------------------------------------------------------- the stateful step


@dataclass(frozen=True)
class Closed:
    """What a calculator publishes for one bucket: (topic, model) pairs, newest input time."""

    outputs: list[tuple[str, BaseModel]]
    newest_input_ms: int | None


class Calculator(Protocol):
    """A service's engine adapter, driven by `BucketStep`."""

    def bucket_of(self, topic: str, value: BaseModel) -> int: ...
    def event_ms(self, topic: str, value: BaseModel) -> int | None: ...
    def observe(self, topic: str, value: BaseModel, position: tuple[int, int]) -> None: ...
    def ready(self, bucket_end_ms: int) -> bool: ...
    def close(self, bucket_end_ms: int) -> Closed: ...
    def close_degraded(self, bucket_end_ms: int, reason: str) -> Closed: ...
    def state(self) -> Any: ...


# At most this many buckets close per step call: a calculator that fell behind catches up
# minute by minute (Bytewax calls back at once), its output and memory flat, never one long burst.
MAX_CLOSES_PER_CALL = 10


@dataclass(frozen=True)
class StepConfig:
    service: str
    clock: ClockConfig
    make_calculator: Callable[[Any], Calculator]  # engine state (None: fresh) -> calculator
    broker_reachable: Callable[[float], bool] = lambda _now: True  # from the Kafka clients' callbacks


def sink_message(topic: str, value: BaseModel) -> KafkaSinkMessage:
    return KafkaSinkMessage(key=value.key().encode(), value=serde.dumps(value), topic=topic)  # type: ignore[attr-defined]


def dlq_message(
    topic: str, partition: int, offset: int, key: bytes | None, raw: bytes | None, reason: str, service: str
) -> KafkaSinkMessage:
    """The dead letter of one input message, for `<topic>.dlq` under the original key."""
    letter = dead_letter(
        source_topic=topic, partition=partition, offset=offset, key=key, raw_value=raw, error=reason, service=service,
    )
    return KafkaSinkMessage(key=key, value=serde.dumps(letter), topic=f"{topic}.dlq")


def failure_reason(exc: BaseException) -> str:
    """`ExceptionType: message`, one line, short enough for a flag or a dead letter."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:200]


class BucketStep(StatefulBatchLogic):
    """The one stateful step: clock + engine; emits KafkaSinkMessages (outputs and DLQ).

    No input and no bucket can stop it: an exception while handling one message dead-letters
    that message (`processing_error: ...`); one while closing a bucket publishes the bucket as
    degraded (the calculator's `close_degraded`, last good values carried)."""

    def __init__(self, config: StepConfig, metrics: StreamMetrics, health: StreamHealth, resume: bytes | None) -> None:
        now = time.time()
        clock_state, engine_state = pickle.loads(resume) if resume is not None else (None, None)
        self.config = config
        self.metrics = metrics
        self.health = health
        self.clock = BucketClock(config.clock, clock_state, now)
        self.calculator = config.make_calculator(engine_state)
        self.more_to_close = False
        self.log = get_logger(step="calc", service=config.service)  # worker threads miss the contextvars
        if clock_state is not None and clock_state.last_closed_ms is not None:
            self.metrics.last_bucket_ms = clock_state.last_closed_ms
            health.resumed(clock_state.last_closed_ms)
            self.log.info("resumed", last_closed_bucket=time_text(clock_state.last_closed_ms))

    def on_batch(self, values: list[Any]) -> tuple[Iterable[KafkaSinkMessage], bool]:
        now = time.time()
        self._connection(now)
        out: list[KafkaSinkMessage] = []
        for item in values:
            if isinstance(item, Arrival):
                out.extend(self._arrival(item, now))
            elif isinstance(item, PartitionStart):
                self.clock.started((item.topic, item.partition), item.offset, now)
            elif isinstance(item, MarkerArrival):
                self.clock.marker(item.marker, now)
        out.extend(self._close_ready(now))
        self.health.replaying = self.clock.replaying(now)
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[KafkaSinkMessage], bool]:
        now = time.time()
        self._connection(now)
        return self._close_ready(now), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[KafkaSinkMessage], bool]:
        if STOP.is_set():
            return [], StatefulBatchLogic.RETAIN  # stopping, not complete: close nothing more
        # Bounded input (tail=False) ended: every partition is complete, close what is left.
        return self._close_ready(time.time(), eof=True, limit=None), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        now = time.time()
        if self.more_to_close:
            return datetime.fromtimestamp(now, UTC)
        wake = self.clock.wake_at(now)
        if self.clock.disconnected_since is not None:  # look again soon: reconnection starts a grace
            wake = min(wake, now + 1.0) if wake is not None else now + 1.0
        return datetime.fromtimestamp(wake + 0.01, UTC) if wake is not None else None

    def snapshot(self) -> bytes:
        # Bytes: an immutable copy of both states, taken at an epoch boundary.
        return pickle.dumps((self.clock.state, self.calculator.state()), protocol=pickle.HIGHEST_PROTOCOL)

    def _connection(self, now: float) -> None:
        # the BrokerWatch's probe logs the transitions; the clock only needs to know
        self.clock.connection(self.config.broker_reachable(now), now)

    def _arrival(self, item: Arrival, now: float) -> list[KafkaSinkMessage]:
        place = (item.topic, item.partition)
        if item.value is None:
            self.clock.arrived(place, item.offset, None, None, now)
            return []
        self.health.arrived(item.topic, now)
        calculator = self.calculator
        try:
            bucket = calculator.bucket_of(item.topic, item.value)
            late = self.clock.arrived(place, item.offset, bucket, calculator.event_ms(item.topic, item.value), now)
            if not late:
                calculator.observe(item.topic, item.value, (item.partition, item.offset))
                return []
        except Exception as exc:  # noqa: BLE001 (one message must not stop the index)
            self.clock.arrived(place, item.offset, None, None, now)
            reason = f"processing_error: {failure_reason(exc)}"
            self.metrics.dead.labels(self.config.service, item.topic, "processing_error").inc()
            self.log.exception("processing_error", topic=item.topic, partition=item.partition, offset=item.offset)
            return [dlq_message(item.topic, item.partition, item.offset, item.key, item.raw, reason, self.config.service)]
        last = self.clock.state.last_closed_ms
        reason = f"late: bucket {time_text(bucket)} was already closed (last closed {time_text(last)})"  # type: ignore[arg-type]
        self.metrics.late.labels(self.config.service, item.topic).inc()
        self.metrics.dead.labels(self.config.service, item.topic, "late").inc()
        with self.health.lock:
            self.health.late_items += 1
        self.log.warning("late", topic=item.topic, partition=item.partition, offset=item.offset, bucket=time_text(bucket))
        return [dlq_message(item.topic, item.partition, item.offset, item.key, item.raw, reason, self.config.service)]

    def _close_ready(self, now: float, eof: bool = False, limit: int | None = MAX_CLOSES_PER_CALL) -> list[KafkaSinkMessage]:
        out: list[KafkaSinkMessage] = []
        self.more_to_close = False
        closed = 0
        while True:
            t = self.clock.next_bucket()
            if t is None or not self.clock.may_close(t, now, eof) or not self.calculator.ready(t):
                return out
            if limit is not None and closed >= limit:
                self.more_to_close = True
                return out
            out.extend(self._close(t, now))
            closed += 1

    def _close(self, t: int, now: float) -> list[KafkaSinkMessage]:
        try:
            result = self.calculator.close(t)
        except Exception as exc:  # noqa: BLE001 (one bucket must not stop the index)
            reason = failure_reason(exc)
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
        # Locators (not hashed, docs/topics.md): where the inputs were read up to, what was quiet.
        locators = {
            "input_offsets": self.clock.input_offsets(),
            "close_notes": [f"idle:{topic}/{partition}" for topic, partition in self.clock.quiet_partitions(now)],
        }
        return self._published(t, result, locators)

    def _published(self, t: int, closed: Closed, locators: dict[str, Any]) -> list[KafkaSinkMessage]:
        service, now = self.config.service, time.time()
        messages = []
        for topic, value in closed.outputs:
            fields = type(value).model_fields
            if update := {name: data for name, data in locators.items() if name in fields}:
                value = value.model_copy(update=update)
            messages.append(sink_message(topic, value))
            self.metrics.published.labels(service, topic).inc()
            self.metrics.saw(topic, t)
        self.metrics.emit_delay.labels(service).observe(max(0.0, now - t / 1000))
        if closed.newest_input_ms is not None:
            self.metrics.latency.labels(service).observe(max(0.0, now - closed.newest_input_ms / 1000))
        self.metrics.last_bucket_ms = t
        self.health.closed(t)
        self.log.debug("bucket_closed", bucket=time_text(t), outputs=len(messages), notes=locators["close_notes"])
        return messages


# --------------------------------------------------------------------------- decoding


def make_decoder(service: str, metrics: StreamMetrics) -> Callable[[Any], list[Any]]:
    """The stateless step: Kafka message -> Arrival (+ a DLQ message when invalid)."""
    log = get_logger(step="decode", service=service)

    def decode(item: Any) -> list[Any]:
        if isinstance(item, PartitionStart):
            return [item]
        if isinstance(item, KafkaError):
            log.warning("source_error", error=str(item.err))
            return []
        message: KafkaSourceMessage = item
        topic = message.topic or ""
        if topic == PROGRESS_TOPIC_NAME:
            try:
                return [MarkerArrival(ProgressMarker.model_validate(orjson.loads(message.value or b"null")))]
            except (ValueError, TypeError) as exc:
                log.warning("bad_progress_marker", offset=message.offset, error=str(exc)[:200])
                return []
        metrics.consumed.labels(service, topic).inc()
        place = dict(topic=topic, partition=message.partition or 0, offset=message.offset or 0)
        try:
            value = decode_value(topic, message.value, key=message.key)
            moment = getattr(value, "event_time", None) or getattr(value, "bucket_end", None)
            if moment:
                metrics.saw(topic, millis(moment))
        except DecodeError as exc:
            metrics.dead.labels(service, topic, "invalid").inc()
            log.warning("invalid_message", **place, error=exc.reason[:200])
            dlq = dlq_message(topic, place["partition"], place["offset"], message.key, message.value, exc.reason, service)
            return [dlq, Arrival(**place, key=message.key, raw=None, value=None)]
        except Exception as exc:  # noqa: BLE001 (a message that breaks the decoder is still just one message)
            reason = f"processing_error: {failure_reason(exc)}"
            metrics.dead.labels(service, topic, "processing_error").inc()
            log.exception("processing_error", **place)
            dlq = dlq_message(topic, place["partition"], place["offset"], message.key, message.value, reason, service)
            return [dlq, Arrival(**place, key=message.key, raw=None, value=None)]
        return [Arrival(**place, key=message.key, raw=message.value, value=value)]

    return decode


# --------------------------------------------------------------------------- the dataflow


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
    make_calculator: Callable[[Any], Calculator],
    health: StreamHealth | None = None,
    output_topics: Sequence[str] = (),
) -> Dataflow:
    """source -> decode (DLQ invalid) -> one stateful step under a constant key -> Kafka."""
    ensure_progress_topic(settings)
    metrics = StreamMetrics(service)
    health = health or StreamHealth(service)
    kafka_config = settings.kafka_config()
    # The clock must know at once when nothing can be read (a dead broker is not a silent source):
    # the source consumers' error callbacks and a metadata probe feed one watch.
    watch = broker_watch([*input_topics, *output_topics])
    watch.start_probe(kafka_config)
    health.broker, health.inputs = watch, InputWatch(input_topics)
    clock = ClockConfig(
        input_topics=tuple(input_topics),
        clocked_topics=tuple(clocked_topics),
        partitions=list_partitions(settings, input_topics),
        lateness_ms=round(settings.allowed_lateness_seconds * 1000),
        idle_timeout_s=settings.idle_timeout_seconds,
        progress_timeout_ms=round(settings.progress_timeout_seconds * 1000),
        quiet_note_after_ms={name: round(seconds * 1000) for name, seconds in health.inputs.limits.items()},
    )
    step = StepConfig(service, clock, make_calculator, watch.reachable)
    source = InputSource(
        settings.brokers(), [*input_topics, PROGRESS_TOPIC_NAME], start_at_ms=settings.start_at_ms,
        tail=settings.tail, add_config={**kafka_config, **watch.client_config()}, batch_size=settings.batch_size,
        raise_on_errors=False,
    )
    flow = Dataflow(flow_id)
    raw = op.input("input", flow, source)
    decoded = op.flat_map("decode", raw, make_decoder(service, metrics))
    split = op.branch("split_dlq", decoded, lambda item: isinstance(item, KafkaSinkMessage))
    keyed = op.key_on("one_key", split.falses, lambda _item: "all")  # one worker owns the engine
    calculated = op.stateful_batch("calc", keyed, lambda resume: BucketStep(step, metrics, health, resume))
    outputs = op.map("unkey", calculated, lambda key_value: key_value[1])
    merged = op.merge("all_out", outputs, split.trues)
    sink_config = {**kafka_config, **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in PRODUCER_DEFAULTS.items()}}
    op.output("kafka_out", merged, KafkaSink(settings.brokers(), None, add_config=sink_config))
    return flow


# --------------------------------------------------------------------------- running


def recovery_config(settings: StreamSettings) -> Any:
    """Bytewax recovery for `settings.recovery_dir`, creating the store when absent."""
    from bytewax.recovery import RecoveryConfig, init_db_dir

    if settings.recovery_dir is None:
        return None
    directory = Path(settings.recovery_dir)
    if not any(directory.glob("part-*.sqlite3")):
        directory.mkdir(parents=True, exist_ok=True)
        init_db_dir(directory, 1)  # = `python -m bytewax.recovery DIR 1`
    return RecoveryConfig(directory, timedelta(seconds=settings.backup_interval_seconds))


def run_flow(flow: Dataflow, settings: StreamSettings) -> None:
    """Run in this process (Bytewax's `cli_main`) until the input ends or KeyboardInterrupt."""
    from bytewax.run import cli_main

    cli_main(
        flow,
        workers_per_process=settings.workers,
        epoch_interval=timedelta(seconds=settings.snapshot_interval_seconds),
        recovery_config=recovery_config(settings),
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_service(
    service: str, settings: StreamSettings, build: Callable[[StreamSettings, StreamHealth], Dataflow]
) -> None:
    """A calculator's whole life: telemetry, the flow, SIGTERM/SIGINT -> clean stop (exit 0)."""
    log = get_logger()
    # Before any thread exists: block the stop signals everywhere, one thread waits for them.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    threading.Thread(target=_wait_for_stop, args=(service, settings.stop_timeout_seconds), name="stop", daemon=True).start()
    health = StreamHealth(service)
    if settings.metrics_port:
        api_port = settings.bytewax_api_port or _free_port()
        os.environ["BYTEWAX_DATAFLOW_API_ENABLED"] = "true"
        os.environ["BYTEWAX_DATAFLOW_API_PORT"] = str(api_port)
        serve_telemetry(settings.health_host, settings.metrics_port, health.report, WithBytewaxMetrics(api_port, service))  # type: ignore[arg-type]
    try:
        flow = build(settings, health)
    except (ValueError, RuntimeError, KafkaException) as exc:  # bad methodology file, missing topics, no broker
        log.error("startup_failed", error=str(exc))
        raise SystemExit(2) from None
    log.info(
        "started", workers=settings.workers, recovery_dir=str(settings.recovery_dir) if settings.recovery_dir else None,
        metrics_port=settings.metrics_port, tail=settings.tail,
    )
    run_flow(flow, settings)
    log.info("stopped", reason="signal" if STOP.is_set() else "end of input")


def _wait_for_stop(service: str, timeout: float) -> None:
    log = get_logger(service=service)  # contextvars do not follow into this thread
    received = signal.sigwait(STOP_SIGNALS)
    log.info("stopping", signal=signal.Signals(received).name)
    STOP.set()
    time.sleep(timeout)
    # Still running: stop abruptly. Safe: outputs are idempotent and recovery replays the epoch.
    log.warning("stop_timeout", seconds=timeout)
    os._exit(0)
