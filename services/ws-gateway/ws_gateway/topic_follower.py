"""Follows syi.calculated and ray.calculated from their latest values, in a thread.

Each gateway instance assigns the partitions itself (no consumer group joins, no offsets are
committed), so instances run side by side and a restart touches nothing in the pipeline. On start
every partition is read from its last committed record (or, with a lookback, from the first
message produced in that window: the index stream's resume window, the constituents snapshot's),
so a snapshot exists whenever a value was ever published. Until it has read up to the records that
were the last committed ones when it started, the follower is "catching up" (degraded in health).
The calculators publish in transactions: the follower reads with `read_committed`, and the last
committed record is found by reading the partition's tail to its last stable offset, never at
`high - 1`, where a commit marker or an aborted record may sit (docs/topics.md, "Reading the topics").

Health (`check()`): a BrokerWatch (the clients' error callbacks and a metadata probe) says when
Kafka cannot be read, and then `kafka` is "down"; each topic's age is judged against the topic
registry's cadence; an unexpected exception is logged, counted and retried (the health
supervisor), and the follower resumes where it was, so clients see no value twice.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import NamedTuple

from confluent_kafka import Consumer, KafkaException, TopicPartition

from syi_shared.codec import decode_or_dead_letter
from syi_shared.health import HealthReport, InputWatch, Supervisor, broker_health, broker_watch
from syi_shared.kafka import make_consumer, make_producer
from syi_shared.last_committed import last_committed
from syi_shared.logs import get_logger
from syi_shared.settings import ServiceSettings
from ws_gateway import telemetry

RETRY_SECONDS = 2.0
TASK = "topic_follower"


class Record(NamedTuple):
    topic: str
    key: str
    raw: bytes  # the value exactly as published
    received_at: float  # time.monotonic() when the consumer returned it
    offset: int  # its position in its partition (the index stream's `seq`)
    produced_ms: int  # its Kafka timestamp


class TopicFollower:
    def __init__(
        self,
        settings: ServiceSettings,
        lookback_seconds: dict[str, float | None],
        deliver: Callable[[list[Record], Callable[[], None] | None], None],
        loop: asyncio.AbstractEventLoop,
        on_assigned: Callable[[list[TopicPartition]], None] | None = None,
    ) -> None:
        """`lookback_seconds`: topic -> None (start at the last message) or a window in seconds;
        `on_assigned` is called on the loop with the start positions, before the first batch."""
        self.settings = settings
        self.lookback_seconds = lookback_seconds
        self.deliver = deliver
        self.on_assigned = on_assigned
        self.loop = loop
        self.status = "starting"
        self.broker = broker_watch(lookback_seconds)
        self.inputs = InputWatch(lookback_seconds)
        self.tasks = Supervisor(telemetry.SERVICE)
        self._next: dict[tuple[str, int], int] = {}  # where to resume each partition after a failure
        # the last committed record of each partition when following began: until all were read the
        # follower is catching up (replaying its lookback), and says so in health
        self._catching_up: dict[tuple[str, int], int] = {}
        self._last: dict[tuple[str, int], int] = {}  # filled by _start_positions
        self._stop = threading.Event()
        # its own thread: the service name from the contextvars does not reach it
        self.log = get_logger(component="topic_follower", service=telemetry.SERVICE)
        self._thread = threading.Thread(target=self._run, name="topic-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    @property
    def following(self) -> bool:
        return self.status == "following" and self._thread.is_alive()

    def check(self) -> HealthReport:
        """The follower's part of /healthz; `kafka` is "down" while no broker can be read."""
        broker = broker_health(self.broker)
        parts = [broker, self.tasks.check()]
        if self.following:
            parts.append(self.inputs.check())
        elif not self._thread.is_alive() and not self._stop.is_set() and self.status != "starting":
            parts.append(HealthReport.failed("kafka: the topic follower thread has ended"))
        elif self.status != "retrying":  # starting or waiting for topics (a retry is the supervisor's reason)
            parts.append(HealthReport.degraded(f"topic follower: {self.status}"))
        kafka = "down" if broker.model_extra["kafka"] == "down" else self.status  # type: ignore[index]
        return HealthReport.combine(*parts, kafka=kafka)

    def _run(self) -> None:
        self.broker.start_probe(self.settings.kafka_config())
        try:
            while not self._stop.is_set():
                try:
                    self._follow()
                except Exception as exc:  # noqa: BLE001 - logged, counted and retried: following must go on
                    self.status = "retrying"
                    self._stop.wait(self.tasks.failed(TASK, exc))
        finally:
            self.broker.stop_probe()
            if self.status == "following":
                self.status = "stopped"

    def _follow(self) -> None:
        """Follow until stopped: pick the start positions, then hand each batch over."""
        consumer = make_consumer(
            # required by librdkafka, never joined: partitions are assigned below
            f"ws-gateway-{uuid.uuid4().hex[:12]}",
            self.settings,
            watch=self.broker,
            **{
                "auto.offset.reset": "latest",  # librdkafka's default, as before: not the factory's "earliest"
                "isolation.level": "read_committed",  # never an aborted or still open transaction's record
            },
        )
        producer = make_producer(self.settings, watch=self.broker)  # for dead letters only
        try:
            assignment = self._start_positions(consumer)
            if assignment is None:
                return
            consumer.assign(assignment)
            if self.on_assigned is not None:
                self.loop.call_soon_threadsafe(self.on_assigned, assignment)
            starts = {(tp.topic, tp.partition): tp.offset for tp in assignment}
            self._catching_up = {place: last for place, last in self._last.items() if starts.get(place, 0) <= last}
            self.status = "catching up" if self._catching_up else "following"
            self.log.info("following", start={f"{tp.topic}/{tp.partition}": tp.offset for tp in assignment})
            while not self._stop.is_set():
                producer.poll(0)
                first = consumer.poll(0.5)
                if first is not None:
                    # consume(n, timeout) would wait out its timeout: take only what already arrived
                    self._hand_over([first, *consumer.consume(499, 0)], producer)
                self.tasks.progressed(TASK)
        finally:
            consumer.close()
            producer.flush(5)

    def _hand_over(self, messages: list, producer) -> None:
        received_at = time.monotonic()
        batch = []
        caught_up = False
        for message in messages:
            if message.error():
                self.log.warning("consumer_error", error=str(message.error()))
                continue
            topic = message.topic()
            place = (topic, message.partition())
            self._next[place] = message.offset() + 1
            if self._catching_up and self._catching_up.get(place, -1) <= message.offset():
                del self._catching_up[place]
                caught_up = not self._catching_up
            self.inputs.saw_message(message)
            telemetry.CONSUMED.labels(telemetry.SERVICE, topic).inc()
            value = decode_or_dead_letter(message, producer, telemetry.SERVICE)
            if value is None:
                telemetry.DEAD_LETTERS.labels(telemetry.SERVICE, topic, "invalid").inc()
                self.log.warning("dead_lettered", topic=topic, partition=message.partition(), offset=message.offset())
                continue
            batch.append(Record(topic, value.key(), message.value(), received_at,  # type: ignore[attr-defined]
                                message.offset(), message.timestamp()[1]))
        if batch or caught_up:
            try:
                # "following" is said once the receiver has published the lookback's last record,
                # so whoever sees "following" sees the newest value too
                self.loop.call_soon_threadsafe(self.deliver, batch, self._caught_up if caught_up else None)
            except RuntimeError:  # the loop closed under us: shutting down
                self._stop.set()

    def _caught_up(self) -> None:
        self.status = "following"
        self.log.info("caught_up")

    def _start_positions(self, consumer: Consumer) -> list[TopicPartition] | None:
        """Wait for the topics, then pick each partition's start; None when stopped first."""
        self._last = {}
        while not self._stop.is_set():
            try:
                metadata = consumer.list_topics(timeout=10)
                missing = [t for t in self.lookback_seconds if t not in metadata.topics or metadata.topics[t].error]
                if missing:
                    self.status = f"waiting for topics {', '.join(missing)}"
                    self.log.info("waiting_for_topics", topics=missing)
                else:
                    positions = [
                        tp
                        for name, lookback in self.lookback_seconds.items()
                        for tp in self._positions(consumer, name, sorted(metadata.topics[name].partitions), lookback)
                    ]
                    # after a failure: on from where we were, so clients see no value twice
                    return [TopicPartition(tp.topic, tp.partition, self._next.get((tp.topic, tp.partition), tp.offset))
                            for tp in positions]
            except (KafkaException, TimeoutError) as exc:  # TimeoutError: a tail not read in time
                self.status = f"waiting for kafka: {exc}"
                self.log.warning("kafka_unavailable", error=str(exc))
            self._stop.wait(RETRY_SECONDS)
        return None

    def _positions(
        self, consumer: Consumer, topic: str, partitions: list[int], lookback: float | None
    ) -> list[TopicPartition]:
        since: dict[int, int] = {}
        if lookback:
            stamp = int((time.time() - lookback) * 1000)
            found = consumer.offsets_for_times([TopicPartition(topic, p, stamp) for p in partitions], timeout=10)
            since = {tp.partition: tp.offset for tp in found if tp.offset >= 0}  # -1: nothing that recent
        # the log starts first: a record committed after the tail was read lies above them
        lows = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0] for p in partitions}
        last = last_committed(topic, partitions, self.settings, timeout=10)
        self._last.update({(topic, p): record.offset() for p, record in last.items()})
        positions = []
        for partition in partitions:
            low = lows[partition]
            # nothing committed yet (an empty partition, or only aborted records): from the log start
            start = last[partition].offset() if partition in last else low
            if partition in since:
                start = max(low, min(start, since[partition]))
            positions.append(TopicPartition(topic, partition, start))
        return positions
