"""store-timescale's writer: the stored topics → PostgreSQL tables, through the shared
consume → write → commit loop (syi_shared.store_loop, docs/storage.md).

The loop runs in a thread (confluent-kafka's consumer blocks); PgWriter is asyncpg, so each
write is handed to the service's event loop and waited for there, bounded by a timeout. A batch
is written table by table, each in one transaction; offsets are committed only after every
table's transaction committed and the batch's dead letters were delivered, so a crash replays
at most the uncommitted batch and the upserts make that replay no change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg
from confluent_kafka import Consumer, Producer
from pydantic import BaseModel

from syi_shared.broker_watch import BrokerWatch
from syi_shared.health import broker_watch
from syi_shared.kafka import make_consumer, make_producer
from syi_shared.logs import get_logger
from syi_shared.shutdown import Shutdown
from syi_shared.store_loop import DB_ERRORS, BatchLimits, Sink, StoreLoop
from syi_shared.telemetry import serve_telemetry

from store_timescale.migrations import Mode, migrate
from store_timescale.partitions import add_retention_policies
from store_timescale.pg_writer import SPECS, PgWriter
from store_timescale.settings import TOPICS, Settings
from store_timescale.telemetry import SERVICE

T = TypeVar("T")

RETENTION_EVERY_SECONDS = 3600.0
# One table's COPY + upsert, waited for by the loop's thread. Each statement is also bounded by
# the pool's command_timeout; a write that hangs longer counts as a failed write and is retried.
WRITE_TIMEOUT_SECONDS = 120.0


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


class TimescaleSink(Sink):
    """(topic, record) pairs per table; each table's rows written by PgWriter on `loop`."""

    def __init__(self, writer: PgWriter, loop: asyncio.AbstractEventLoop, mode: Mode, retention: bool) -> None:
        self.writer = writer
        self.loop = loop
        self.retention = mode == "plain" and retention  # TimescaleDB drops chunks by its own policies
        self._retention_due = 0.0
        self.log = get_logger()

    def row(self, topic: str, value: BaseModel) -> tuple[str, tuple[str, BaseModel]]:
        return SPECS[topic].table, (topic, value)

    def write(self, table: str, rows: list[tuple[str, BaseModel]]) -> int:
        return sum(self._wait(self.writer.write(rows)).values())

    def failure_kind(self, exc: Exception) -> str:
        return type(exc).__name__

    def chores(self) -> None:
        now = time.monotonic()
        if not self.retention or now < self._retention_due:
            return
        self._retention_due = now + RETENTION_EVERY_SECONDS
        try:
            self._wait(self._drop_expired())
        except (asyncpg.PostgresError, OSError) as exc:  # TimeoutError is an OSError: tried again next hour
            DB_ERRORS.labels(SERVICE, type(exc).__name__).inc()
            self.log.warning("retention_failed", error=str(exc))

    async def _drop_expired(self) -> None:
        async with self.writer.pool.acquire() as conn:
            await self.writer.partitions.drop_expired(conn)

    def _wait(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the service's event loop and wait for it (from the loop's thread)."""
        future = asyncio.run_coroutine_threadsafe(work, self.loop)
        try:
            return future.result(WRITE_TIMEOUT_SECONDS)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(f"the database did not answer within {WRITE_TIMEOUT_SECONDS:.0f} s") from None


class StoreWorker(StoreLoop):
    """The loop with the PostgreSQL sink; run it with `await worker.serve()` on the writer's event loop."""

    def __init__(
        self,
        settings: Settings,
        writer: PgWriter,
        consumer: Consumer,
        producer: Producer,
        shutdown: Shutdown,
        mode: Mode,
        broker: BrokerWatch | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        sink = TimescaleSink(writer, loop or asyncio.get_running_loop(), mode, settings.retention_enabled)
        super().__init__(
            SERVICE, settings.group_id, TOPICS, sink, consumer, producer, shutdown,
            BatchLimits(max_messages=settings.batch_max_messages, max_seconds=settings.batch_wait_seconds),
            broker,
        )
        self.settings = settings
        self.mode = mode

    def health(self, **detail: Any) -> dict[str, Any]:
        return super().health(mode=self.mode, **detail)

    async def serve(self) -> bool:
        """The loop in a thread of its own, while this event loop serves its writes."""
        return await asyncio.to_thread(self.run)


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


async def run(settings: Settings, shutdown: Shutdown | None = None) -> bool:
    """The service until `shutdown` (SIGTERM/SIGINT when None); True when everything consumed was
    stored and committed."""
    log = get_logger()
    if shutdown is None:
        shutdown = Shutdown().install_async()
    pool, writer, mode = await prepare(settings)
    broker = broker_watch(TOPICS)
    consumer = make_consumer(settings.group_id, settings, watch=broker, **settings.consumer_config)
    producer = make_producer(settings, watch=broker)
    broker.start_probe(settings.kafka_config())
    worker = StoreWorker(settings, writer, consumer, producer, shutdown, mode, broker)
    server = None
    if settings.health_port:
        server = serve_telemetry(settings.health_host, settings.health_port, worker.health)
    try:
        return await worker.serve()  # closes the consumer: leaves the group at once
    finally:
        log.info("stopping")
        broker.stop_probe()
        await asyncio.to_thread(producer.flush, 10)
        await pool.close()
        if server is not None:
            server.shutdown()
