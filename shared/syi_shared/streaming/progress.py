"""Progress markers (docs/streaming.md, "Progress markers"): a tape player's promise that every
input message with event time < `upto` has been produced, ending at the listed offsets, so a
calculator need not guess from idleness. `ProgressAnnouncer` is the player's half; the bucket
clock (`streaming.clock`) is the calculators' half.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka import KafkaError as ConfluentKafkaError
from confluent_kafka.admin import AdminClient, OffsetSpec

from syi_shared import serde
from syi_shared.admin import provision_topics
from syi_shared.kafka import make_producer
from syi_shared.methodology.engine import bucket_end_of
from syi_shared.models import ProgressMarker
from syi_shared.settings import ServiceSettings
from syi_shared.timefmt import now_text, time_text
from syi_shared.topics import PROGRESS_TOPIC, RAW_INPUT_TOPICS

PROGRESS_TOPIC_NAME = PROGRESS_TOPIC.name

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
    # while a leader moves (a broker of a cluster died or came back)
    ConfluentKafkaError.OFFSET_NOT_AVAILABLE, ConfluentKafkaError.UNKNOWN_LEADER_EPOCH,
    ConfluentKafkaError.FENCED_LEADER_EPOCH, ConfluentKafkaError.NOT_COORDINATOR,
}

T = TypeVar("T")


def retry_until_ready(call: Callable[[], T], timeout: float = 30.0) -> T:
    """Retry while partitions have no leader yet (right after topics were created, or while one moves)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0]
            if not (error.code() in _NOT_READY or error.retriable()) or time.monotonic() > deadline:
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
