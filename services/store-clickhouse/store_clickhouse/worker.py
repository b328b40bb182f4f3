"""store-clickhouse's writer: the raw inputs (cc.prices, cc.orderbook, dl.apy, ex.mktcap, trad.tbill) and
syi.calculated → ClickHouse tables, through the shared consume → write → commit loop
(syi_shared.store_loop, docs/clickhouse.md).

Offsets are committed only after the batch's inserts returned (and its dead letters were
delivered), so a crash re-delivers at most the uncommitted batch; the tables collapse those
duplicates (ReplacingMergeTree on the natural key). chDB's client blocks, like the loop's consumer:
the sink calls it directly.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer
from pydantic import BaseModel

from syi_shared.broker_watch import BrokerWatch
from syi_shared.health import HealthReport, broker_watch
from syi_shared.kafka import make_consumer, make_producer
from syi_shared.logs import get_logger
from syi_shared.shutdown import Shutdown
from syi_shared.store_loop import BatchLimits, Sink, StoreLoop
from syi_shared.telemetry import serve_telemetry

from store_clickhouse.clickhouse_store import ClickHouseStore, safe_dsn
from store_clickhouse.settings import Settings
from store_clickhouse.tables import TABLE_FOR_TOPIC, Row, Table
from store_clickhouse.telemetry import SERVICE

TABLES: dict[str, Table] = {table.name: table for table in TABLE_FOR_TOPIC.values()}


class ClickHouseSink(Sink):
    """Decoded values → rows of their topic's table; one insert per table and batch."""

    def __init__(self, store: ClickHouseStore) -> None:
        self.store = store

    def row(self, topic: str, value: BaseModel) -> tuple[str, Row]:
        table = TABLE_FOR_TOPIC[topic]
        return table.name, table.row(value)

    def write(self, table: str, rows: list[Row]) -> int:
        self.store.insert(TABLES[table], rows)
        return len(rows)

    def failure_kind(self, exc: Exception) -> str:
        return "insert"


class ClickHouseWriter(StoreLoop):
    """The loop with the ClickHouse sink; `health()` adds the store's DSN."""

    def __init__(
        self,
        settings: Settings,
        store: ClickHouseStore,
        consumer: Consumer,
        producer: Producer,
        shutdown: Shutdown,
        broker: BrokerWatch | None = None,
    ) -> None:
        super().__init__(
            SERVICE, settings.clickhouse_consumer_group, settings.clickhouse_topics, ClickHouseSink(store),
            consumer, producer, shutdown,
            BatchLimits(max_messages=settings.clickhouse_batch_max_messages,
                        max_seconds=settings.clickhouse_batch_max_seconds),
            broker,
        )
        self.settings = settings
        self.store = store

    def health(self, **detail: Any) -> dict[str, Any]:
        return super().health(store=safe_dsn(self.settings.clickhouse_dsn), **detail)


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
    consumer = make_consumer(settings.clickhouse_consumer_group, settings, watch=broker, **settings.consumer_config)
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
