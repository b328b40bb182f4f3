"""The loop: consume a batch → decode (bad values to the DLQ) → write in one transaction → commit offsets.

Offsets are committed only after the database transaction has committed, so a crash between
the two replays the batch; the upserts make the replay harmless (at-least-once, no duplicates).
A database error keeps the batch and retries it with backoff instead of skipping ahead. Any
other exception in a turn of the loop is logged, counted and retried by the health supervisor,
and the partitions are read again from their committed offsets (nothing skipped).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from pydantic import BaseModel

from syi_shared.broker_watch import BrokerWatch
from syi_shared.codec import decode_or_dead_letter
from syi_shared.consumer_lag import record_consumer_lag
from syi_shared.health import HealthReport, InputWatch, Supervisor, broker_health, broker_watch
from syi_shared.kafka import make_consumer, make_producer, rewind_to_committed
from syi_shared.logs import get_logger
from syi_shared.shutdown import Shutdown
from syi_shared.telemetry import serve_telemetry

from store_timescale import telemetry
from store_timescale.migrations import Mode, migrate
from store_timescale.partitions import add_retention_policies
from store_timescale.pg_writer import PgWriter
from store_timescale.settings import TOPICS, Settings
from store_timescale.telemetry import SERVICE

LAG_EVERY_SECONDS = 15.0
RETENTION_EVERY_SECONDS = 3600.0


async def connect(dsn: str, attempts: int = 60) -> asyncpg.Pool:
    """A small pool; PostgreSQL may still be starting, so retry for about a minute."""
    for attempt in range(1, attempts + 1):
        try:
            return await asyncpg.create_pool(dsn, min_size=1, max_size=2, command_timeout=60)
        except (OSError, asyncpg.CannotConnectNowError) as exc:
            if attempt == attempts:
                raise
            get_logger().warning("database_unreachable", attempt=attempt, error=str(exc))
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


class StoreWorker:
    def __init__(
        self,
        settings: Settings,
        writer: PgWriter,
        consumer: Consumer,
        producer: Producer,
        shutdown: Shutdown,
        mode: Mode,
        broker: BrokerWatch | None = None,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.consumer = consumer
        self.producer = producer
        self.shutdown = shutdown
        self.mode = mode
        self.failing: str | None = None  # the last database error while it lasts
        self.last_commit: float | None = None
        self._lag_due = 0.0
        self._retention_due = 0.0
        self.log = get_logger()
        self.broker = broker
        self.inputs = InputWatch(TOPICS)
        self.tasks = Supervisor(SERVICE)
        self._rewind = False  # after a failed turn: read again from the committed offsets first

    def health(self) -> dict[str, Any]:
        database = HealthReport() if self.failing is None else HealthReport.degraded(f"database: {self.failing}")
        detail: dict[str, Any] = {"mode": self.mode}
        if self.last_commit is not None:
            detail["seconds_since_commit"] = round(time.time() - self.last_commit, 1)
        if self.failing:
            detail["error"] = self.failing
        return HealthReport.combine(database, broker_health(self.broker), self.inputs.check(), self.tasks.check(),
                                    **detail).body()

    async def run(self) -> None:
        while not self.shutdown.is_set():
            try:
                await self.turn()
            except Exception as exc:  # noqa: BLE001 - logged, counted and retried: the loop must not end
                self._rewind = True  # the batch in hand was not committed: read it again
                await self._sleep_or_shutdown(self.tasks.failed("write_loop", exc))
            else:
                self.tasks.progressed("write_loop")

    async def turn(self) -> None:
        """One turn of the loop: consume a batch, store it, commit it, and the periodic chores."""
        if self._rewind:
            await asyncio.to_thread(rewind_to_committed, self.consumer)
            self._rewind = False
        batch = await asyncio.to_thread(
            self.consumer.consume, self.settings.batch_max_messages, self.settings.batch_wait_seconds
        )
        await self.handle(batch)
        await self._housekeeping()

    async def handle(self, batch: Sequence[Any]) -> bool:
        """Store one polled batch and commit its offsets; False if shutdown interrupted a retry."""
        messages = []
        for message in batch:
            if message.error():
                self.log.warning("consumer_error", error=str(message.error()))
                continue
            messages.append(message)
        if not messages:
            return True
        records: list[tuple[str, BaseModel]] = []
        dead = 0
        for message in messages:
            self.inputs.saw_message(message)
            telemetry.messages_consumed.labels(SERVICE, message.topic()).inc()
            record = decode_or_dead_letter(message, self.producer, SERVICE)
            if record is None:
                dead += 1
                telemetry.dead_letters.labels(SERVICE, message.topic(), "invalid").inc()
            else:
                records.append((message.topic(), record))
        if records and not await self._write_until_stored(records):
            return False
        if dead:
            # the dead letters must be durable before their offsets are committed
            self.producer.flush(30)
        await asyncio.to_thread(self._commit, messages)
        return True

    async def _write_until_stored(self, records: list[tuple[str, BaseModel]]) -> bool:
        delay = 0.5
        while True:
            started = time.perf_counter()
            try:
                written = await self.writer.write(records)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                kind = type(exc).__name__
                telemetry.db_errors.labels(SERVICE, kind).inc()
                self.failing = f"{kind}: {exc}"
                self.log.error("write_failed", error=self.failing, records=len(records), retry_in=delay)
                if await self._sleep_or_shutdown(delay):
                    return False
                delay = min(delay * 2, 30.0)
                continue
            self.failing = None
            telemetry.batch_seconds.labels(SERVICE).observe(time.perf_counter() - started)
            for table, count in written.items():
                telemetry.rows_written.labels(SERVICE, table).inc(count)
            self.log.debug("batch_stored", records=len(records), written=written)
            return True

    def _commit(self, messages: Sequence[Any]) -> None:
        # the next offset to read, per partition
        ends: dict[tuple[str, int], int] = {}
        for message in messages:
            place = (message.topic(), message.partition())
            ends[place] = max(ends.get(place, -1), message.offset() + 1)
        try:
            self.consumer.store_offsets(offsets=[TopicPartition(t, p, o) for (t, p), o in ends.items()])
            self.consumer.commit(asynchronous=False)
        except KafkaException as exc:
            # a rebalance took the partitions away: their new owner re-reads, the upserts absorb it
            if exc.args[0].code() != KafkaError._NO_OFFSET:  # "nothing to commit" is harmless
                self.log.warning("commit_failed", error=str(exc))
        self.last_commit = time.time()
        telemetry.last_commit.labels(SERVICE).set(self.last_commit)

    async def _sleep_or_shutdown(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.shutdown.is_set():
                return True
            await asyncio.sleep(min(0.2, deadline - time.monotonic()))
        return self.shutdown.is_set()

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._lag_due:
            self._lag_due = now + LAG_EVERY_SECONDS
            await asyncio.to_thread(self._measure_lag)
        if self.mode == "plain" and self.settings.retention_enabled and now >= self._retention_due:
            self._retention_due = now + RETENTION_EVERY_SECONDS
            try:
                async with self.writer.pool.acquire() as conn:
                    await self.writer.partitions.drop_expired(conn)
            except (asyncpg.PostgresError, OSError) as exc:
                telemetry.db_errors.labels(SERVICE, type(exc).__name__).inc()
                self.log.warning("retention_failed", error=str(exc))

    def _measure_lag(self) -> None:
        try:
            positions = self.consumer.position(self.consumer.assignment())
            record_consumer_lag(self.consumer, self.settings.group_id, positions, timeout=2.0)
        except KafkaException as exc:
            self.log.debug("lag_unavailable", error=str(exc))


async def prepare(settings: Settings) -> tuple[asyncpg.Pool, PgWriter, Mode]:
    """Connect, migrate, lay out partitions / retention; the writer is ready to write."""
    pool = await connect(settings.postgres_dsn)
    async with pool.acquire() as conn:
        mode, applied = await migrate(conn, settings.timescale)
        if mode == "timescale" and settings.retention_enabled:
            await add_retention_policies(conn)
    get_logger().info("schema_ready", mode=mode, applied=applied)
    writer = PgWriter(pool, partitioned=mode == "plain")
    await writer.start(settings.partitions_ahead_months)
    return pool, writer, mode


async def run(settings: Settings, shutdown: Shutdown | None = None) -> None:
    log = get_logger()
    if shutdown is None:
        shutdown = Shutdown().install_async()
    pool, writer, mode = await prepare(settings)
    broker = broker_watch(TOPICS)
    consumer = make_consumer(settings.group_id, settings, watch=broker)
    producer = make_producer(settings, watch=broker)
    broker.start_probe(settings.kafka_config())
    worker = StoreWorker(settings, writer, consumer, producer, shutdown, mode, broker)
    server = None
    if settings.health_port:
        server = serve_telemetry(settings.health_host, settings.health_port, worker.health)
    consumer.subscribe(list(TOPICS))
    log.info("consuming", topics=list(TOPICS), group=settings.group_id)
    try:
        await worker.run()
    finally:
        log.info("stopping")
        broker.stop_probe()
        await asyncio.to_thread(consumer.close)
        producer.flush(10)
        await pool.close()
        if server is not None:
            server.shutdown()
