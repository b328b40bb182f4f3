"""The store writers' loop (syi_shared.store_loop) against the real broker, with a store in memory
that can be made to fail: what it commits, when, and what it does while the store is down."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pydantic import BaseModel
from structlog.testing import capture_logs

from syi_shared.kafka import make_consumer, make_producer
from syi_shared.settings import ServiceSettings
from syi_shared.shutdown import Shutdown
from syi_shared.store_loop import BatchLimits, Sink, StoreLoop
from tests.store_clickhouse.kafka_progress import committed_offsets, produce, wait_for, watermarks
from tests.store_timescale import records as r

pytestmark = pytest.mark.integration

TOPIC = "trad.tbill"  # one partition, little traffic from other tests
SERVICE = "test-store-loop"


class MemorySink(Sink):
    """A store in memory: rows per table, and a switch that makes every write fail."""

    def __init__(self) -> None:
        self.tables: dict[str, list[Any]] = {}
        self.down = threading.Event()
        self._lock = threading.Lock()

    def row(self, topic: str, value: BaseModel) -> tuple[str, Any]:
        return "tbills", value

    def write(self, table: str, rows: list[Any]) -> int:
        if self.down.is_set():
            raise ConnectionRefusedError("injected: the store is down")
        with self._lock:
            self.tables.setdefault(table, []).extend(rows)
        return len(rows)

    def series(self, series: str) -> list[Any]:
        with self._lock:
            return [row for row in self.tables.get("tbills", []) if row.series == series]


def tbills(series: str, count: int) -> list[tuple[str, BaseModel, bytes]]:
    values = [r.tbill(series, f"2026-10-{day:02d}", 4.0 + day / 100) for day in range(1, count + 1)]
    return [(TOPIC, value, value.key().encode()) for value in values]


@contextmanager
def running(
    settings: ServiceSettings, sink: Sink, group: str, limits: BatchLimits, producer_settings: dict | None = None,
    **consumer_config: Any,
) -> Iterator[StoreLoop]:
    consumer = make_consumer(group, settings, **{"session.timeout.ms": 6000, **consumer_config})
    producer = make_producer(settings, **(producer_settings or {}))
    shutdown = Shutdown()
    loop = StoreLoop(SERVICE, group, [TOPIC], sink, consumer, producer, shutdown, limits, dlq_flush_seconds=2.0)
    outcome: dict[str, bool] = {}
    thread = threading.Thread(target=lambda: outcome.update(flushed=loop.run()), name="store-loop", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        shutdown.trigger()
        thread.join(60)
    assert not thread.is_alive(), "the loop did not stop within 60 s of shutdown"
    loop.flushed = outcome.get("flushed")  # type: ignore[attr-defined]


def caught_up(settings: ServiceSettings, group: str, marks: dict) -> bool:
    done = committed_offsets(settings, group, [TOPIC])
    return all(end == low or done.get(place, -1) >= end for place, (low, end) in marks.items())


def test_a_store_down_longer_than_max_poll_interval_keeps_the_group_and_commits_only_what_is_stored(provisioned):
    series, group, sink = r.unique_symbol("S"), f"test-{uuid.uuid4().hex[:10]}", MemorySink()
    sink.down.set()
    landed = produce(provisioned, tbills(series, 6))
    marks = watermarks(provisioned, [TOPIC])
    first = min(offset for _, _, offset in landed)
    limits = BatchLimits(max_messages=500, max_seconds=0.2)
    # the smallest poll interval the broker allows with a 6 s session: a loop that stopped polling
    # while it retried would be evicted from its group within the outage
    with capture_logs() as logs, running(provisioned, sink, group, limits, **{"max.poll.interval.ms": 7000}) as loop:
        wait_for(lambda: loop.health()["status"] == "degraded", 60, "the failing store to show in health")
        health = loop.health()
        threading.Event().wait(14.0)  # twice max.poll.interval.ms
        during = committed_offsets(provisioned, group, [TOPIC])
        sink.down.clear()
        wait_for(lambda: caught_up(provisioned, group, marks), 60, "the kept batch to be written and committed")
        wait_for(lambda: loop.health()["status"] == "ok", 30, "health ok again")
    assert health["status"] == "degraded"
    assert any(reason.startswith("store: tbills: ConnectionRefusedError: injected") for reason in health["reasons"])
    assert during[(TOPIC, 0)] <= first, "offsets were committed while the store was down"
    assert [v.observation_date for v in sink.series(series)] == [f"2026-10-{d:02d}" for d in range(1, 7)]
    assert (loop.assignments, loop.revocations) == (1, 1)  # joined once; the one revocation is its close
    assert [e for e in logs if e["event"] == "batch_dropped_on_revoke"] == []
    assert loop.flushed is True


def test_partitions_revoked_by_a_rebalance_take_the_pending_batch_with_them_written_and_committed(provisioned):
    series, group, sink = r.unique_symbol("S"), f"test-{uuid.uuid4().hex[:10]}", MemorySink()
    produce(provisioned, tbills(series, 4))
    marks = watermarks(provisioned, [TOPIC])
    never = BatchLimits(max_messages=1_000_000, max_seconds=3600)  # nothing is written but on revoke/shutdown
    with running(provisioned, sink, group, never) as loop:
        wait_for(lambda: len([v for v in loop.batch.rows.get("tbills", []) if v.series == series]) == 4, 60,
                 "every record of ours to be pending")
        assert sink.series(series) == [] and committed_offsets(provisioned, group, [TOPIC])[(TOPIC, 0)] < 0
        # a second member joins: the whole assignment is revoked (eager rebalancing)
        other = make_consumer(group, provisioned, **{"session.timeout.ms": 6000})
        other.subscribe([TOPIC])
        try:
            wait_for(lambda: other.poll(0.2) is not None or loop.revocations >= 1, 60, "the rebalance")
            wait_for(lambda: loop.revocations >= 1, 60, "the revocation")
            assert len(sink.series(series)) == 4  # written while the partition was still ours
            assert caught_up(provisioned, group, marks)
        finally:
            other.close()


def test_a_batch_whose_dead_letters_are_not_delivered_is_not_committed(provisioned):
    series, group, sink = r.unique_symbol("S"), f"test-{uuid.uuid4().hex[:10]}", MemorySink()
    good = tbills(series, 2)
    landed = produce(provisioned, [*good, (TOPIC, b'{"series": "not a tbill"}', f"{series}".encode())])
    first = min(offset for _, _, offset in landed)
    limits = BatchLimits(max_messages=500, max_seconds=0.2)
    errors = {"service": SERVICE, "kind": "dlq"}
    before = REGISTRY.get_sample_value("syi_db_errors_total", errors) or 0.0
    # the dead-letter producer's broker is unreachable: its letter is never acknowledged
    nowhere = {"bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": 600_000}
    with running(provisioned, sink, group, limits, producer_settings=nowhere) as loop:
        wait_for(lambda: (REGISTRY.get_sample_value("syi_db_errors_total", errors) or 0) > before, 90,
                 "the undelivered dead letter to fail the batch")
        health = loop.health()
        done = committed_offsets(provisioned, group, [TOPIC])
    assert health["status"] == "degraded" and "dead letters not delivered" in health["last_error"]
    assert done[(TOPIC, 0)] <= first
    assert sink.series(series) == []  # nothing of the batch before its letters are out
    assert loop.flushed is False  # the final flush could not deliver them either: left uncommitted


def test_an_exception_in_a_turn_is_counted_degrades_health_and_the_batch_is_read_again(provisioned):
    series, group, sink = r.unique_symbol("S"), f"test-{uuid.uuid4().hex[:10]}", MemorySink()
    produce(provisioned, tbills(series, 5))
    marks = watermarks(provisioned, [TOPIC])
    broken = threading.Event()
    broken.set()
    real_row = sink.row

    def row(topic: str, value: BaseModel) -> tuple[str, Any]:  # a bug striking our records until "fixed"
        if broken.is_set() and getattr(value, "series", None) == series:
            raise RuntimeError("injected: a bug in the loop")
        return real_row(topic, value)

    sink.row = row  # type: ignore[method-assign]
    labels = {"service": SERVICE, "task": "write_loop"}
    before = REGISTRY.get_sample_value("syi_task_failures_total", labels) or 0.0
    with capture_logs() as logs, running(provisioned, sink, group, BatchLimits(max_messages=500, max_seconds=0.2)) as loop:
        wait_for(lambda: (REGISTRY.get_sample_value("syi_task_failures_total", labels) or 0) >= before + 2, 60,
                 "the failing turn to be retried")
        health = loop.health()
        broken.clear()
        wait_for(lambda: caught_up(provisioned, group, marks), 60, "everything committed once the bug is gone")
        wait_for(lambda: loop.health()["status"] == "ok", 30, "health ok again")
    assert health["status"] == "degraded"
    assert any(x.startswith("task write_loop: failed") and "injected" in x for x in health["reasons"])
    assert [v.observation_date for v in sink.series(series)] == [f"2026-10-{d:02d}" for d in range(1, 6)]
    failed = [e for e in logs if e["event"] == "task_failed"]
    assert failed and isinstance(failed[0]["exc_info"], RuntimeError)
