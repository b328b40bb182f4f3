"""The writer service end to end through the real broker and database."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
import orjson
import pytest
from confluent_kafka import TopicPartition
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from store_timescale.migrations import migrate
from store_timescale.pg_writer import PgWriter
from store_timescale.settings import TOPICS, Settings
from store_timescale.worker import StoreWorker, run
from syi_shared import serde
from syi_shared.kafka import make_consumer, make_producer, read_to_end
from syi_shared.last_committed import last_committed
from syi_shared.models import DeadLetter
from syi_shared.shutdown import Shutdown
from tests.conftest import REPO_ROOT, free_port
from tests.store_clickhouse.kafka_progress import committed_offsets
from tests.store_clickhouse.kafka_progress import produce as produce_landed
from tests.store_timescale import records as r

pytestmark = pytest.mark.integration


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.2)


def tape(symbol: str) -> list[tuple[str, object]]:
    """A small tape of every stored topic, keyed by a symbol no other test uses."""
    buckets = r.minutes("2026-11-27T10:01:00.000Z", 5)
    return [
        *(("syi.calculated", r.index_value(t, 0.04 + i / 1000, index_id=symbol)) for i, t in enumerate(buckets)),
        *(("ray.calculated", r.ray(symbol, t, 0.03 + i / 1000)) for i, t in enumerate(buckets)),
        *(("metrics.peg", r.peg(symbol, t)) for t in buckets[:3]),
        *(("metrics.liquidity", r.liquidity(symbol, t)) for t in buckets[:3]),
        *(("dl.apy", r.pool_yield(f"pool-{symbol}", t)) for t in buckets[:2]),
        *(("ex.mktcap", r.market_cap(symbol, t)) for t in buckets[:2]),
        ("trad.tbill", r.tbill(symbol, "2026-11-25", 4.12)),
        ("trad.tbill", r.tbill(symbol, "2026-11-26", 4.10, event_time="2026-11-27T15:30:00.000Z")),
    ]


EXPECTED = {"index_values": 5, "ray_values": 5, "peg_metrics": 3, "liquidity_metrics": 3, "pool_yields": 2,
            "market_caps": 2, "tbills": 2}
KEY_COLUMN = {"index_values": "index_id", "pool_yields": "pool", "tbills": "series"}


def produce(settings, messages: list[tuple[str, object]]) -> None:
    producer = make_producer(settings)
    for topic_name, value in messages:
        raw = value if isinstance(value, bytes) else serde.dumps(value)
        key = value.key() if hasattr(value, "key") else "bad"
        producer.produce(topic_name, key=key.encode(), value=raw)
    assert producer.flush(30) == 0


async def counts(dsn: str, symbol: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        found = {}
        for table in EXPECTED:
            column = KEY_COLUMN.get(table, "symbol")
            value = f"pool-{symbol}" if table == "pool_yields" else symbol
            found[table] = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = $1", value)
        return found
    except asyncpg.UndefinedTableError:
        return {}  # the service has not migrated yet
    finally:
        await conn.close()


def committed(settings, group: str, topics: list[str]) -> tuple[dict, dict]:
    """(committed offset, end offset) per partition of `topics` for `group`. The end is the offset
    after the last committed record, where a group that stored everything commits: commit markers
    take offsets, so it is not the high watermark (0 where nothing is committed)."""
    consumer = make_consumer(group, settings)
    try:
        metadata = consumer.list_topics(timeout=10)
        partitions = [TopicPartition(t, p) for t in topics for p in metadata.topics[t].partitions]
        done = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(partitions, timeout=10)}
    finally:
        consumer.close()
    ends = {(tp.topic, tp.partition): 0 for tp in partitions}
    for topic in topics:
        last = last_committed(topic, metadata.topics[topic].partitions, settings, timeout=10)
        ends.update({(topic, partition): message.offset() + 1 for partition, message in last.items()})
    return done, ends


def settings_for(provisioned, dsn: str, group: str, **changes) -> Settings:
    # retention off: the fixed 2026 dates of the test data must not age out on a later run
    values = {"health_port": 0, "batch_wait_seconds": 0.2, "retention_enabled": False, **changes}
    return Settings(kafka_bootstrap_servers=provisioned.kafka_config()["bootstrap.servers"], postgres_dsn=dsn,
                    group_id=group, **values)


async def test_replaying_the_tape_twice_stores_each_record_once(provisioned, fresh_dsn, unique_group):
    symbol = r.unique_symbol()
    messages = tape(symbol)
    bad = orjson.dumps({"schema_version": 1, "symbol": symbol, "bucket_end": "yesterday"})
    produce(provisioned, messages + messages)  # the tape played twice
    producer = make_producer(provisioned)
    producer.produce("ray.calculated", key=symbol.encode(), value=bad)
    producer.flush(30)

    port = free_port()
    first = settings_for(provisioned, fresh_dsn, unique_group, health_port=port)
    shutdown = Shutdown()
    task = asyncio.create_task(run(first, shutdown))
    try:
        await eventually(lambda: _equals(counts(fresh_dsn, symbol), EXPECTED), what="the tape to be stored")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            health = (await client.get("/healthz")).json()
            metrics = (await client.get("/metrics")).text
    finally:
        shutdown.trigger()
        await asyncio.wait_for(task, 30)
    assert health["status"] == "ok" and health["mode"] == "plain"
    assert 'syi_rows_written_total{service="store-timescale",table="index_values"}' in metrics
    assert 'syi_messages_consumed_total{service="store-timescale",topic="syi.calculated"}' in metrics

    # a second consumer group re-reads everything from the start: a third delivery of each message
    second = settings_for(provisioned, fresh_dsn, f"{unique_group}-replay")
    shutdown = Shutdown()
    task = asyncio.create_task(run(second, shutdown))
    topics = list(TOPICS)
    try:
        async def caught_up() -> bool:
            done, ends = await asyncio.to_thread(committed, provisioned, second.group_id, topics)
            return all(done[p] == ends[p] for p in ends if ends[p] > 0)

        await eventually(caught_up, what="the replay group to commit the ends of the topics")
    finally:
        shutdown.trigger()
        await asyncio.wait_for(task, 30)
    assert await counts(fresh_dsn, symbol) == EXPECTED

    conn = await asyncpg.connect(fresh_dsn)
    try:
        stored = [orjson.loads(x["record"]) for x in await conn.fetch(
            "SELECT record FROM index_values WHERE index_id = $1 ORDER BY bucket_end", symbol)]
    finally:
        await conn.close()
    published = [v for t, v in messages if t == "syi.calculated"]
    assert [type(v).model_validate(s) for v, s in zip(published, stored)] == published

    letters = [DeadLetter.model_validate(orjson.loads(m.value())) for m in read_to_end(["ray.calculated.dlq"], provisioned)
               if m.key() == symbol.encode()]
    assert letters and letters[0].service == "store-timescale" and letters[0].error.startswith("bucket_end")


async def _equals(found: Awaitable[dict[str, int]], expected: dict[str, int]) -> bool:
    return await found == expected


async def test_offsets_are_committed_only_after_the_rows_are_stored(provisioned, fresh_dsn, unique_group):
    symbol = r.unique_symbol()
    conn = await asyncpg.connect(fresh_dsn)
    await migrate(conn)
    ours = [("ray.calculated", v, v.key().encode())
            for v in (r.ray(symbol, t, 0.03) for t in r.minutes("2026-11-27T10:01:00.000Z", 3))]
    landed = produce_landed(provisioned, ours)
    (partition,) = {p for _, p, _ in landed}
    first, last = min(o for _, _, o in landed), max(o for _, _, o in landed)

    settings = settings_for(provisioned, fresh_dsn, unique_group)
    # a short statement timeout turns "the table is locked" into database errors the loop retries
    pool = await asyncpg.create_pool(fresh_dsn, min_size=1, max_size=2, command_timeout=0.5)
    writer = PgWriter(pool, partitioned=True)
    await writer.start(months_ahead=0)
    consumer = make_consumer(unique_group, settings, **{"session.timeout.ms": 6000})
    shutdown = Shutdown()
    worker = StoreWorker(settings, writer, consumer, make_producer(settings), shutdown, "plain")
    lock = conn.transaction()
    await lock.start()
    await conn.execute("LOCK TABLE ray_values IN ACCESS EXCLUSIVE MODE")
    serving = asyncio.create_task(worker.serve())
    try:
        async def failing() -> bool:
            return worker.last_error is not None and "ray_values" in worker.last_error

        await eventually(failing, what="the write to fail while the table is locked")
        health = worker.health()
        done = await asyncio.to_thread(committed_offsets, provisioned, unique_group, ["ray.calculated"])
        assert done[("ray.calculated", partition)] <= first, "offsets were committed before the rows were stored"

        await lock.rollback()  # the database recovers: the same batch is retried and stored

        async def stored_and_committed() -> bool:
            done = await asyncio.to_thread(committed_offsets, provisioned, unique_group, ["ray.calculated"])
            return done[("ray.calculated", partition)] > last

        await eventually(stored_and_committed, what="the kept batch to be stored and committed")
        await eventually(lambda: _is_ok(worker), what="health ok again")
        stored = await conn.fetchval("SELECT count(*) FROM ray_values WHERE symbol = $1", symbol)
    finally:
        shutdown.trigger()
        assert await asyncio.wait_for(serving, 60) is True
        await pool.close()
        await conn.close()
    assert health["status"] == "degraded" and any(x.startswith("store: ray_values") for x in health["reasons"])
    assert stored == 3


@pytest.mark.e2e
async def test_the_service_process_serves_health_and_stops_cleanly_on_sigterm(provisioned, fresh_dsn, unique_group):
    port = free_port()
    env = {
        **os.environ,
        "SYI_POSTGRES_DSN": fresh_dsn,
        "SYI_KAFKA_BOOTSTRAP_SERVERS": provisioned.kafka_config()["bootstrap.servers"],
        "SYI_GROUP_ID": unique_group,
        "SYI_HEALTH_PORT": str(port),
        "SYI_LOG_FORMAT": "json",
        "SYI_RETENTION_ENABLED": "false",
    }
    process = subprocess.Popen([sys.executable, "-m", "store_timescale"], env=env, cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    symbol = r.unique_symbol()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            async def healthy() -> bool:
                assert process.poll() is None, process.stdout.read().decode()
                try:
                    return (await client.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(healthy, what="/healthz")
        produce(provisioned, [("syi.calculated", r.index_value("2026-11-27T10:01:00.000Z", 0.05, index_id=symbol))])
        await eventually(lambda: _equals(_index_count(fresh_dsn, symbol), 1), what="the value to be stored")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output = (await asyncio.to_thread(process.communicate, timeout=30))[0].decode()
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, output
    assert '"event": "stopping"' in output


async def _index_count(dsn: str, index_id: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM index_values WHERE index_id = $1", index_id)
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


async def test_an_exception_in_the_loop_is_logged_counted_retried_and_degraded_until_a_turn_succeeds(
    provisioned, fresh_dsn, unique_group
):
    symbol = r.unique_symbol()
    conn = await asyncpg.connect(fresh_dsn)
    await migrate(conn)
    await conn.close()
    ours = [("ray.calculated", r.ray(symbol, t, 0.03 + i / 1000))
            for i, t in enumerate(r.minutes("2026-11-27T10:01:00.000Z", 5))]
    produce(provisioned, ours)
    settings = settings_for(provisioned, fresh_dsn, unique_group)
    pool = await asyncpg.create_pool(fresh_dsn, min_size=1, max_size=2)
    writer = PgWriter(pool, partitioned=True)
    await writer.start(months_ahead=0)
    consumer = make_consumer(unique_group, settings, **{"session.timeout.ms": 6000})
    shutdown = Shutdown()
    worker = StoreWorker(settings, writer, consumer, make_producer(settings), shutdown, "plain")
    broken = True
    real_row = worker.sink.row

    def row(topic, value):  # a bug that strikes our records, until it is "fixed"
        if broken and getattr(value, "symbol", None) == symbol:
            raise RuntimeError("injected: a bug in the write loop")
        return real_row(topic, value)

    worker.sink.row = row  # type: ignore[method-assign]
    labels = {"service": "store-timescale", "task": "write_loop"}
    before = REGISTRY.get_sample_value("syi_task_failures_total", labels) or 0.0
    task = asyncio.create_task(worker.serve())
    try:
        with capture_logs() as logs:
            async def retried() -> bool:
                return (REGISTRY.get_sample_value("syi_task_failures_total", labels) or 0) >= before + 2

            await eventually(retried, what="the failing turn to be retried")
            health = worker.health()
            broken = False

            async def stored() -> bool:
                return await _ray_count(fresh_dsn, symbol) == 5

            await eventually(stored, what="every record, once the bug is gone")  # re-read, not skipped
            await eventually(lambda: _is_ok(worker), what="health ok again")
    finally:
        shutdown.trigger()
        await asyncio.wait_for(task, 30)
        await pool.close()
    assert health["status"] == "degraded"
    assert any(reason.startswith("task write_loop: failed") and "injected" in reason for reason in health["reasons"])
    failed = [e for e in logs if e["event"] == "task_failed"]
    assert failed and failed[0]["task"] == "write_loop" and isinstance(failed[0]["exc_info"], RuntimeError)
    # recovered once the bug is gone (and possibly before: a turn with an empty batch is progress too)
    recovered = [e["task"] for e in logs if e["event"] == "task_recovered"]
    assert recovered and set(recovered) == {"write_loop"}


async def _is_ok(worker: StoreWorker) -> bool:
    return worker.health()["status"] == "ok"


async def _ray_count(dsn: str, symbol: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM ray_values WHERE symbol = $1", symbol)
    finally:
        await conn.close()
