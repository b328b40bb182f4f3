"""The one consume → write → commit loop of the store writers (docs/storage.md, "The writer's loop").

A writer supplies a `Sink` (decode → rows, and "make these rows durable, raise on failure");
the loop does the rest, the same way for every store:

* messages are read into a batch, written when it is full or old enough, and the batch's
  offsets are committed only after its rows are durable AND its dead letters were delivered
  (the producer's flush is checked). A crash re-delivers at most the uncommitted batch; the
  stores' upserts on natural keys turn that into no change (at least once + idempotent
  writes = each row exactly once).
* when the store fails, the batch is kept and retried with backoff (0.5 s doubling to 30 s);
  meanwhile the partitions are paused and the consumer keeps polling, so the group never
  sees the writer as stuck (`max.poll.interval.ms`) and nothing new is fetched. Health is
  degraded with the error until a write succeeds.
* when partitions are revoked (a rebalance), the pending batch is written and committed
  while they are still ours; if the store is down it is dropped uncommitted and the next
  owner reads it again.
* any other exception in a turn is logged with its traceback, counted in
  `syi_task_failures_total{service,task="write_loop"}` and retried after the Supervisor's
  backoff (health degraded until a turn succeeds); the pending batch is dropped and the
  partitions are read again from their committed offsets, so nothing is skipped.

The loop is a plain synchronous thread: confluent-kafka's consumer blocks, and one batch at a
time is all the ordering a store needs. An asyncio store bridges its writes onto its event loop
(store-timescale does).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from pydantic import BaseModel, ConfigDict, Field

from syi_shared import metric_names
from syi_shared.broker_watch import BrokerWatch
from syi_shared.codec import decode_or_dead_letter
from syi_shared.consumer_lag import record_consumer_lag
from syi_shared.health import HealthReport, InputWatch, Supervisor, broker_health
from syi_shared.kafka import rewind_to_committed
from syi_shared.logs import get_logger
from syi_shared.metrics import counter, gauge, histogram
from syi_shared.shutdown import Shutdown

POLL_SECONDS = 0.5  # the longest the loop waits before looking at the shutdown flag again
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 30.0
DLQ_FLUSH_SECONDS = 10.0  # how long a batch's dead letters may take to be acknowledged
TASK = "write_loop"  # the Supervisor's name for the loop (syi_task_failures_total{task})
LAG_EVERY_SECONDS = 15.0  # kafka_consumer_lag also while nothing is committed (a store outage shows as growing lag)

MESSAGES_CONSUMED = counter(metric_names.MESSAGES_CONSUMED, "Messages read from Kafka, by topic",
                            labels=("service", "topic"))
DEAD_LETTERS = counter(metric_names.DEAD_LETTERS, "Invalid messages sent to <topic>.dlq",
                       labels=("service", "topic", "reason"))
ROWS_WRITTEN = counter(metric_names.ROWS_WRITTEN, "Rows inserted or changed, by table", labels=("service", "table"))
DB_ERRORS = counter(metric_names.DB_ERRORS, "Failed store operations, by kind", labels=("service", "kind"))
BATCH_SECONDS = histogram(metric_names.STORE_BATCH_SECONDS, "Time to write one batch and commit its offsets",
                          labels=("service",))
LAST_COMMIT = gauge(metric_names.STORE_LAST_COMMIT, "Unix time of the last committed batch", labels=("service",))


class Sink:
    """What a store adds to the loop. `row` and `write` are required; the rest have defaults."""

    def row(self, topic: str, value: BaseModel) -> tuple[str, Any]:
        """The table a valid value of `topic` goes to, and its row there."""
        raise NotImplementedError

    def write(self, table: str, rows: list[Any]) -> int:
        """Make `rows` durable in `table`, or raise. Writing a row twice must leave one (upsert
        on its natural key). Returns the rows inserted or changed (for syi_rows_written_total)."""
        raise NotImplementedError

    def failure_kind(self, exc: Exception) -> str:
        """The `kind` label of syi_db_errors_total for a failed write."""
        return "write"

    def chores(self) -> None:
        """Periodic work between turns (retention...); called once per turn, decides its own timing."""


class BatchLimits(BaseModel):
    """A batch is written when it holds `max_messages` or is `max_seconds` old, whichever first."""

    model_config = ConfigDict(frozen=True)

    max_messages: int = Field(ge=1)
    max_seconds: float = Field(gt=0)


class Batch:
    """Rows waiting for their write, per table, and the offsets to commit once they are in."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Any]] = defaultdict(list)
        self.offsets: dict[tuple[str, int], int] = {}
        self.messages = 0
        self.started = 0.0

    def add(self, message: Any, table: str | None, row: Any = None) -> None:
        if self.messages == 0:
            self.started = time.monotonic()
        self.messages += 1
        if table is not None:
            self.rows[table].append(row)
        # the next offset to read is what Kafka stores as committed
        self.offsets[(message.topic(), message.partition())] = message.offset() + 1


class StoreLoop:
    """Consume `topics` with `consumer` (group `group`) into `sink` until `shutdown`."""

    def __init__(
        self,
        service: str,
        group: str,
        topics: Iterable[str],
        sink: Sink,
        consumer: Consumer,
        producer: Producer,
        shutdown: Shutdown,
        limits: BatchLimits,
        broker: BrokerWatch | None = None,
        dlq_flush_seconds: float = DLQ_FLUSH_SECONDS,
    ) -> None:
        self.service = service
        self.group = group
        self.topics = list(topics)
        self.sink = sink
        self.consumer = consumer
        self.producer = producer  # dead letters
        self.shutdown = shutdown
        self.limits = limits
        self.broker = broker
        self.dlq_flush_seconds = dlq_flush_seconds
        self.batch = Batch()
        self.log = get_logger(group=group)
        self.status = "starting"
        self.last_error: str | None = None
        self.consumed = 0
        self.committed_batches = 0
        self.last_commit: float | None = None
        self.assignments = 0  # partitions assigned to us, counted (a rebalance after an eviction shows here)
        self.revocations = 0
        self.inputs = InputWatch(self.topics)
        self.tasks = Supervisor(service)
        self._retry_delay = FIRST_RETRY_SECONDS
        self._lag_due = 0.0
        self._rewind = False  # after a failed turn: read again from the committed offsets first

    # ----------------------------------------------------------------- health

    def health(self, **detail: Any) -> dict[str, Any]:
        """The report's body: the store's state, the broker, the inputs' ages, the loop's own failures."""
        if self.status == "ok":
            store = HealthReport()
        elif self.status == "degraded":
            store = HealthReport.degraded(f"store: {self.last_error}")
        else:
            store = HealthReport.degraded(self.status)  # starting, stopping
        since = round(time.time() - self.last_commit, 1) if self.last_commit is not None else None
        return HealthReport.combine(
            store, broker_health(self.broker), self.inputs.check(), self.tasks.check(),
            consumed=self.consumed, pending=self.batch.messages, committed_batches=self.committed_batches,
            seconds_since_commit=since, last_error=self.last_error, **detail,
        ).body()

    # ----------------------------------------------------------------- the loop

    def run(self) -> bool:
        """Run until shutdown; True when everything consumed was written and committed."""
        self.consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        self.status = "ok"
        self.log.info("consuming", topics=self.topics)
        while not self.shutdown.is_set():
            wait = self.tasks.guard(TASK, self._turn)
            if wait is not None:
                self._recover(wait)
        flushed = self.flush()
        if not flushed:
            self.log.error("unflushed_at_shutdown", pending=self.batch.messages)
        self.status = "stopping"
        self.consumer.close()  # leave the group now, so its partitions move on at once
        self.log.info("stopped", consumed=self.consumed, flushed=flushed)
        return flushed

    def _turn(self) -> None:
        """One turn: read what fits in the batch, write it when it is due, the sink's chores."""
        if self._rewind:
            rewind_to_committed(self.consumer)
            self._rewind = False
        room = self.limits.max_messages - self.batch.messages
        if room > 0:  # a full batch waiting for the store does not grow
            for message in self.consumer.consume(room, timeout=self._wait_seconds()):
                self._take(message)
        if self._batch_due() and not self.flush():
            self._back_off()
        self.sink.chores()
        self._measure_lag()

    def _recover(self, delay: float) -> None:
        """After an unexpected failure: drop the pending batch (nothing of it is committed) and
        read again from the committed offsets, after the Supervisor's backoff."""
        self.batch = Batch()
        self._rewind = True
        self._wait_paused(delay, keep=False)

    def _measure_lag(self) -> None:
        """Every LAG_EVERY_SECONDS: how far the read positions are behind the ends (fresh from the
        broker: while partitions are paused the cached ends do not move). Skipped while no broker answers."""
        now = time.monotonic()
        if now < self._lag_due:
            return
        self._lag_due = now + LAG_EVERY_SECONDS
        if self.broker is not None and self.broker.reasons(time.time()):
            return
        try:
            positions = self.consumer.position(self.consumer.assignment())
            record_consumer_lag(self.consumer, self.group, positions, timeout=1.0)
        except KafkaException as exc:
            self.log.debug("lag_unavailable", error=str(exc))

    def _wait_seconds(self) -> float:
        if self.batch.messages == 0:
            return POLL_SECONDS
        age = time.monotonic() - self.batch.started
        return max(0.0, min(POLL_SECONDS, self.limits.max_seconds - age))

    def _batch_due(self) -> bool:
        if self.batch.messages == 0:
            return False
        if self.batch.messages >= self.limits.max_messages:
            return True
        return time.monotonic() - self.batch.started >= self.limits.max_seconds

    def _take(self, message: Any) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                self.log.warning("kafka_error", error=str(error))
            return
        topic = message.topic()
        self.inputs.saw_message(message)
        self.consumed += 1
        MESSAGES_CONSUMED.labels(self.service, topic).inc()
        value = decode_or_dead_letter(message, self.producer, self.service)
        if value is None:
            DEAD_LETTERS.labels(self.service, topic, "invalid").inc()
            self.batch.add(message, None)  # its offset is committed with the batch, after the letter is delivered
            return
        table, row = self.sink.row(topic, value)
        self.batch.add(message, table, row)

    # ----------------------------------------------------------------- write, then commit

    def flush(self) -> bool:
        """Write the batch, then commit its offsets; False (batch kept) when the store failed."""
        if self.batch.messages == 0:
            return True
        if self.producer.flush(self.dlq_flush_seconds) > 0:
            # a dead letter not yet in Kafka must not have its offset committed
            return self._failed("dlq", f"dead letters not delivered within {self.dlq_flush_seconds:g} s")
        started = time.monotonic()
        for table in list(self.batch.rows):
            rows = self.batch.rows[table]
            try:
                written = self.sink.write(table, rows)
            except Exception as exc:  # noqa: BLE001 - any store failure: keep the batch, retry later
                return self._failed(self.sink.failure_kind(exc), f"{table}: {type(exc).__name__}: {exc}")
            ROWS_WRITTEN.labels(self.service, table).inc(written)
            # written tables leave the batch, so a retry does not write them again
            del self.batch.rows[table]
        self._commit()
        BATCH_SECONDS.labels(self.service).observe(time.monotonic() - started)
        self.batch = Batch()
        self.status, self.last_error, self._retry_delay = "ok", None, FIRST_RETRY_SECONDS
        return True

    def _commit(self) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in self.batch.offsets.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # the rows are in; the messages will come again and the upserts absorb them
            self.log.warning("commit_failed", error=str(exc))
            return
        self.committed_batches += 1
        self.last_commit = time.time()
        LAST_COMMIT.labels(self.service).set(self.last_commit)
        record_consumer_lag(self.consumer, self.group, offsets, cached=True)

    def _failed(self, kind: str, error: str) -> bool:
        DB_ERRORS.labels(self.service, kind).inc()
        self.status, self.last_error = "degraded", error
        self.log.error("write_failed", kind=kind, error=error, pending=self.batch.messages,
                       retry_in_s=self._retry_delay)
        return False

    def _back_off(self) -> None:
        """Wait before retrying the store, partitions paused, still polling."""
        delay, self._retry_delay = self._retry_delay, min(self._retry_delay * 2, MAX_RETRY_SECONDS)
        self._wait_paused(delay, keep=True)

    def _wait_paused(self, seconds: float, keep: bool) -> None:
        """Wait `seconds` (or until shutdown) with the assigned partitions paused: polling keeps the
        group membership (max.poll.interval.ms) and serves rebalances without fetching. A message
        already fetched joins the batch when `keep`; otherwise it is read again after the rewind."""
        self.consumer.pause(self.consumer.assignment())
        deadline = time.monotonic() + seconds
        while not self.shutdown.is_set() and time.monotonic() < deadline:
            message = self.consumer.poll(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            if message is not None and keep:
                self._take(message)
            self._measure_lag()
        self.consumer.resume(self.consumer.assignment())

    # ----------------------------------------------------------------- rebalances

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assignments += 1
        self.log.info("partitions_assigned", partitions=len(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Eager rebalancing revokes the whole assignment: write what we hold while the offsets
        # are still ours; if the store is down, drop it uncommitted (the next owner reads it).
        self.revocations += 1
        if not self.flush():
            self.log.warning("batch_dropped_on_revoke", pending=self.batch.messages)
            self.batch = Batch()
