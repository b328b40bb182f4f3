"""The loop: consume cc.prices / cc.orderbook / syi.calculated → batch → insert → commit.

Offsets are committed only after the batch's inserts returned (and its dead letters were
delivered), so a crash re-delivers at most the uncommitted batch; the tables collapse
those duplicates (ReplacingMergeTree on the natural key). The loop is a plain
synchronous thread: confluent-kafka's consumer and chDB's client both block, and one
batch at a time is all the ordering this needs. Each turn of the loop runs under the health
supervisor: an unexpected exception is logged, counted and retried, the pending batch is
dropped and the partitions are read again from their committed offsets (nothing skipped).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from syi_shared.broker_watch import BrokerWatch
from syi_shared.codec import decode_or_dead_letter
from syi_shared.consumer_lag import record_consumer_lag
from syi_shared.health import HealthReport, InputWatch, Supervisor, broker_health, broker_watch
from syi_shared.kafka import make_consumer, make_producer, rewind_to_committed
from syi_shared.logs import get_logger
from syi_shared.shutdown import Shutdown
from syi_shared.telemetry import serve_telemetry

from store_clickhouse import telemetry
from store_clickhouse.clickhouse_store import ClickHouseStore, safe_dsn
from store_clickhouse.settings import Settings
from store_clickhouse.tables import TABLE_FOR_TOPIC, Row, Table
from store_clickhouse.telemetry import SERVICE

POLL_SECONDS = 0.5  # the longest the loop waits before looking at the shutdown flag again
MAX_RETRY_SECONDS = 30.0


class Batch:
    """Rows waiting for their insert, and the offsets to commit once they are in."""

    def __init__(self) -> None:
        self.rows: dict[Table, list[Row]] = defaultdict(list)
        self.offsets: dict[tuple[str, int], int] = {}
        self.messages = 0
        self.started = 0.0

    def add(self, message: Any, table: Table | None, row: Row | None) -> None:
        if self.messages == 0:
            self.started = time.monotonic()
        self.messages += 1
        if table is not None and row is not None:
            self.rows[table].append(row)
        # the next offset to read is what Kafka stores as committed
        self.offsets[(message.topic(), message.partition())] = message.offset() + 1


class ClickHouseWriter:
    def __init__(
        self,
        settings: Settings,
        store: ClickHouseStore,
        consumer: Consumer,
        producer: Producer,
        shutdown: Shutdown,
        broker: BrokerWatch | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.consumer = consumer
        self.producer = producer
        self.shutdown = shutdown
        self.batch = Batch()
        self.log = get_logger(group=settings.clickhouse_consumer_group)
        self.status = "starting"
        self.last_error: str | None = None
        self.consumed = 0
        self.committed_batches = 0
        self._retry_delay = 0.5
        self.broker = broker
        self.inputs = InputWatch(settings.clickhouse_topics)
        self.tasks = Supervisor(SERVICE)
        self._rewind = False  # after a failed turn: read again from the committed offsets first

    def health(self) -> dict[str, Any]:
        if self.status == "ok":
            store = HealthReport()
        elif self.status == "degraded":
            store = HealthReport.degraded(f"store: {self.last_error}")
        else:
            store = HealthReport.degraded(self.status)  # starting, stopping
        return HealthReport.combine(
            store, broker_health(self.broker), self.inputs.check(), self.tasks.check(),
            store=safe_dsn(self.settings.clickhouse_dsn), consumed=self.consumed, pending=self.batch.messages,
            committed_batches=self.committed_batches, last_error=self.last_error,
        ).body()

    def run(self) -> bool:
        """Run until shutdown; True when everything consumed was written and committed."""
        self.consumer.subscribe(self.settings.clickhouse_topics, on_revoke=self._on_revoke)
        self.status = "ok"
        self.log.info("consuming", topics=self.settings.clickhouse_topics)
        while not self.shutdown.is_set():
            wait = self.tasks.guard("write_loop", self._turn)
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
        """One turn of the loop: read what fits in the batch, write it when it is due."""
        if self._rewind:
            rewind_to_committed(self.consumer)
            self._rewind = False
        room = self.settings.clickhouse_batch_max_messages - self.batch.messages
        if room > 0:  # a full batch waiting for the store does not grow
            for message in self.consumer.consume(room, timeout=self._wait_seconds()):
                self._take(message)
        if self._batch_due() and not self.flush():
            self._back_off()

    def _recover(self, delay: float) -> None:
        """After an unexpected failure: drop the pending batch (nothing of it is committed), read
        again from the committed offsets, after the supervisor's backoff."""
        self.batch = Batch()
        self._rewind = True
        deadline = time.monotonic() + delay
        while not self.shutdown.is_set() and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _wait_seconds(self) -> float:
        if self.batch.messages == 0:
            return POLL_SECONDS
        age = time.monotonic() - self.batch.started
        return max(0.0, min(POLL_SECONDS, self.settings.clickhouse_batch_max_seconds - age))

    def _batch_due(self) -> bool:
        if self.batch.messages == 0:
            return False
        if self.batch.messages >= self.settings.clickhouse_batch_max_messages:
            return True
        return time.monotonic() - self.batch.started >= self.settings.clickhouse_batch_max_seconds

    def _take(self, message: Any) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                self.log.warning("kafka_error", error=str(error))
            return
        topic = message.topic()
        self.inputs.saw_message(message)
        self.consumed += 1
        telemetry.MESSAGES_CONSUMED.labels(SERVICE, topic).inc()
        value = decode_or_dead_letter(message, self.producer, SERVICE)
        if value is None:
            telemetry.DEAD_LETTERS.labels(SERVICE, topic, "invalid").inc()
            self.batch.add(message, None, None)
            return
        table = TABLE_FOR_TOPIC[topic]
        self.batch.add(message, table, table.row(value))

    def flush(self) -> bool:
        """Insert the batch, then commit its offsets; False (batch kept) when the store failed."""
        if self.batch.messages == 0:
            return True
        if self.producer.flush(10.0) > 0:
            # a dead letter not yet in Kafka must not have its offset committed
            return self._failed("dlq", "dead letters not delivered within 10 s")
        started = time.monotonic()
        for table in list(self.batch.rows):
            rows = self.batch.rows[table]
            try:
                self.store.insert(table, rows)
            except Exception as exc:  # any store failure: keep the batch, retry later
                return self._failed("insert", f"{table.name}: {exc}")
            telemetry.ROWS_WRITTEN.labels(SERVICE, table.name).inc(len(rows))
            # written tables leave the batch, so a retry does not insert them again
            del self.batch.rows[table]
        self._commit()
        telemetry.BATCH_SECONDS.labels(SERVICE).observe(time.monotonic() - started)
        self.batch = Batch()
        self.status, self.last_error, self._retry_delay = "ok", None, 0.5
        return True

    def _commit(self) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in self.batch.offsets.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # the rows are in; the messages will come again and collapse onto them
            self.log.warning("commit_failed", error=str(exc))
            return
        self.committed_batches += 1
        telemetry.LAST_COMMIT.labels(SERVICE).set(time.time())
        record_consumer_lag(self.consumer, self.settings.clickhouse_consumer_group, offsets, cached=True)

    def _failed(self, kind: str, error: str) -> bool:
        telemetry.DB_ERRORS.labels(SERVICE, kind).inc()
        self.status, self.last_error = "degraded", error
        self.log.error("write_failed", kind=kind, error=error, pending=self.batch.messages)
        return False

    def _back_off(self) -> None:
        """Wait before retrying; paused partitions keep the group membership without fetching."""
        delay, self._retry_delay = self._retry_delay, min(self._retry_delay * 2, MAX_RETRY_SECONDS)
        self.consumer.pause(self.consumer.assignment())
        deadline = time.monotonic() + delay
        while not self.shutdown.is_set() and time.monotonic() < deadline:
            message = self.consumer.poll(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            if message is not None:
                self._take(message)
        self.consumer.resume(self.consumer.assignment())

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Eager rebalancing revokes the whole assignment: write what we hold while the
        # offsets are still ours; if the store is down, drop it uncommitted (re-delivered).
        if not self.flush():
            self.log.warning("batch_dropped_on_revoke", pending=self.batch.messages)
            self.batch = Batch()


def run(settings: Settings) -> int:
    """The service: telemetry, store and schema, then the loop until SIGTERM; the exit code."""
    log = get_logger()
    shutdown = Shutdown().install()
    writer: ClickHouseWriter | None = None

    def health() -> dict[str, Any] | HealthReport:
        return writer.health() if writer is not None else HealthReport.degraded("starting: opening the store")

    server = serve_telemetry(settings.health_host, settings.health_port, health) if settings.health_port else None
    try:
        store = ClickHouseStore.open(settings.clickhouse_dsn, settings.clickhouse_database)
        store.ensure_schema()
    except Exception as exc:
        log.error(
            "store_unavailable", setting="SYI_CLICKHOUSE_DSN", store=safe_dsn(settings.clickhouse_dsn), error=str(exc)
        )
        return 2
    log.info("schema_ready", store=safe_dsn(settings.clickhouse_dsn))
    broker = broker_watch(settings.clickhouse_topics)
    producer = make_producer(settings, watch=broker)
    consumer = make_consumer(settings.clickhouse_consumer_group, settings, watch=broker)
    broker.start_probe(settings.kafka_config())
    writer = ClickHouseWriter(settings, store, consumer, producer, shutdown, broker)
    try:
        return 0 if writer.run() else 1
    finally:
        broker.stop_probe()
        producer.flush(10.0)
        store.close()
        if server is not None:
            server.shutdown()
