"""The writer against the real Kafka broker and real chDB, run in-process on a thread."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC

import orjson
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from store_clickhouse.clickhouse_store import ClickHouseStore
from store_clickhouse.settings import Settings
from store_clickhouse.worker import ClickHouseWriter
from syi_shared.kafka import make_consumer, make_producer, read_to_end
from syi_shared.models import IndexValue
from syi_shared.settings import ServiceSettings
from syi_shared.shutdown import Shutdown
from syi_shared.timefmt import format_utc
from tests.store_clickhouse.kafka_progress import caught_up, committed_offsets, produce, wait_for, watermarks
from tests.store_clickhouse.records import book, index_value, tick, unique_venue

pytestmark = pytest.mark.integration


def writer_settings(kafka_bootstrap: str, chdb_dsn: str, database: str, **overrides) -> Settings:
    return Settings(
        kafka_bootstrap_servers=kafka_bootstrap, clickhouse_dsn=chdb_dsn, clickhouse_database=database,
        clickhouse_consumer_group=f"test-{uuid.uuid4().hex[:10]}", health_port=0,
        clickhouse_batch_max_seconds=0.2, clickhouse_batch_max_messages=500, **overrides,
    )


@contextmanager
def running_writer(
    settings: Settings, prepare: Callable[[ClickHouseWriter], None] = lambda writer: None
) -> Iterator[ClickHouseWriter]:
    """A writer on its own store handle and thread; stopped (final flush, commit) on exit.
    `prepare` sees the writer before its thread starts (fault injection)."""
    store = ClickHouseStore.open(settings.clickhouse_dsn, settings.clickhouse_database)
    consumer = make_consumer(settings.clickhouse_consumer_group, settings, **{"session.timeout.ms": 6000})
    shutdown = Shutdown()
    writer = ClickHouseWriter(settings, store, consumer, make_producer(settings), shutdown)
    prepare(writer)
    thread = threading.Thread(target=writer.run, name="writer", daemon=True)
    thread.start()
    try:
        yield writer
    finally:
        shutdown.trigger()
        thread.join(60)
        store.close()
    assert not thread.is_alive(), "the writer did not stop within 60 s of shutdown"


def wait_until_committed(kafka: ServiceSettings, settings: Settings, marks) -> None:
    group = settings.clickhouse_consumer_group
    wait_for(lambda: caught_up(kafka, group, marks), 90, f"group {group} to commit up to {marks}")


def stored_prices(store: ClickHouseStore, venue: str) -> list[dict]:
    return store.query(
        "SELECT * FROM prices FINAL WHERE venue = {v:String} ORDER BY event_time", {"v": venue}
    )


def count(store: ClickHouseStore, table: str, column: str, value: str) -> int:
    return store.query(f"SELECT count() AS n FROM {table} FINAL WHERE {column} = {{v:String}}", {"v": value})[0]["n"]


def test_messages_delivered_twice_are_stored_once_with_exact_values(
    provisioned, kafka_bootstrap, chdb_dsn, database, store
):
    venue, index_id = unique_venue(), f"T{uuid.uuid4().hex[:8].upper()}"
    ticks = [tick(venue, i * 37, 1.0 + i / 1e6 + 1 / 3e9) for i in range(300)]
    books = [book(venue, i * 500, [(0.9999, 1000.0 + i)], [(1.0001, 2000.5)]) for i in range(20)]
    values = [index_value(index_id, m, 4.0 + m / 7) for m in range(5)]
    messages = (
        [("cc.prices", t, t.key().encode()) for t in ticks]
        + [("cc.orderbook", b, b.key().encode()) for b in books]
        + [("syi.calculated", v, v.key().encode()) for v in values]
    )
    produce(provisioned, messages * 2)  # the producer side delivered everything twice
    marks = watermarks(provisioned)

    settings = writer_settings(kafka_bootstrap, chdb_dsn, database)
    with running_writer(settings):
        wait_until_committed(provisioned, settings, marks)
    assert (count(store, "prices", "venue", venue), count(store, "orderbook", "venue", venue)) == (300, 20)
    assert count(store, "index_values", "index_id", index_id) == 5

    # A second group re-reads everything into the same tables: still each record once.
    again = writer_settings(kafka_bootstrap, chdb_dsn, database)
    with running_writer(again):
        wait_until_committed(provisioned, again, marks)
    assert (count(store, "prices", "venue", venue), count(store, "orderbook", "venue", venue)) == (300, 20)
    assert count(store, "index_values", "index_id", index_id) == 5

    rows = stored_prices(store, venue)
    assert [(r["price"], r["bid"], r["ask"]) for r in rows] == [(t.price, t.bid, t.ask) for t in ticks]
    assert [format_utc(r["event_time"].replace(tzinfo=UTC)) for r in rows] == [
        t.event_time for t in ticks
    ]


def test_every_revision_of_a_bucket_is_stored(provisioned, kafka_bootstrap, chdb_dsn, database, store):
    index_id = f"T{uuid.uuid4().hex[:8].upper()}"
    original = index_value(index_id, 1, 4.00)
    correction = IndexValue.model_validate({**index_value(index_id, 1, 4.40, revision=1).model_dump(mode="json"),
                                            "supersedes_cid": original.cid, "restatement_reason": "late DAI book"})
    produce(provisioned, [("syi.calculated", v, v.key().encode()) for v in (original, correction, original)])
    marks = watermarks(provisioned)
    settings = writer_settings(kafka_bootstrap, chdb_dsn, database)
    with running_writer(settings):
        wait_until_committed(provisioned, settings, marks)
    rows = store.query("SELECT revision, syi_percent, supersedes_cid, restatement_reason, cid FROM index_values "
                       "FINAL WHERE index_id = {v:String} ORDER BY revision", {"v": index_id})
    assert [tuple(r.values()) for r in rows] == [
        (0, 4.00, None, None, original.cid), (1, 4.40, original.cid, "late DAI book", correction.cid)]


def test_invalid_messages_go_to_the_dlq_and_valid_ones_are_stored(
    provisioned, kafka_bootstrap, chdb_dsn, database, store
):
    venue = unique_venue()
    bad_key = f"USDC.{venue}".encode()
    good = tick(venue, 0, 1.0)
    wrong_type = orjson.dumps({**good.model_dump(mode="json"), "price": "cheap"})
    landed = produce(provisioned, [
        ("cc.prices", b'{"symbol": "USDC",', bad_key),
        ("cc.prices", wrong_type, bad_key),
        ("cc.prices", good, good.key().encode()),
        ("cc.orderbook", b"[1, 2]", bad_key),
    ])
    marks = watermarks(provisioned)
    settings = writer_settings(kafka_bootstrap, chdb_dsn, database)
    with running_writer(settings):
        wait_until_committed(provisioned, settings, marks)

    assert [r["price"] for r in stored_prices(store, venue)] == [1.0]
    # Any group reading from the start dead-letters these bytes again: one letter per source position.
    letters = {
        (letter["source_topic"], letter["partition"], letter["offset"]): letter
        for letter in (orjson.loads(m.value()) for m in read_to_end(["cc.prices.dlq", "cc.orderbook.dlq"], provisioned))
        if letter["key"] == bad_key.decode() and letter["service"] == "store-clickhouse"
    }
    bad_places = [landed[0], landed[1], landed[3]]
    assert sorted(letters) == sorted(bad_places)
    errors = [letters[place]["error"] for place in bad_places]
    assert errors[0].startswith("value: invalid JSON")
    assert errors[1].startswith("price:")
    assert errors[2] == "value: expected a JSON object, got list"
    assert letters[bad_places[1]]["raw_value"] == wrong_type.decode()


def test_offsets_are_committed_only_after_the_insert_succeeds(
    provisioned, kafka_bootstrap, chdb_dsn, database, store
):
    venue = unique_venue()
    ticks = [tick(venue, i * 10, 1.0 + i / 1e4) for i in range(40)]
    store.client.command("DROP TABLE prices")  # the store refuses every price insert for now
    landed = produce(provisioned, [("cc.prices", t, t.key().encode()) for t in ticks])
    marks = watermarks(provisioned)
    errors_before = REGISTRY.get_sample_value(
        "syi_db_errors_total", {"service": "store-clickhouse", "kind": "insert"}
    ) or 0.0

    settings = writer_settings(kafka_bootstrap, chdb_dsn, database)
    with running_writer(settings) as writer:
        wait_for(lambda: writer.health()["status"] == "degraded", 60, "the writer to report the failing store")
        assert "prices" in writer.health()["last_error"]
        assert REGISTRY.get_sample_value(
            "syi_db_errors_total", {"service": "store-clickhouse", "kind": "insert"}
        ) > errors_before
        committed = committed_offsets(provisioned, settings.clickhouse_consumer_group)
        first_ours = min(offset for _, _, offset in landed)
        partition = landed[0][1]
        assert committed[("cc.prices", partition)] <= first_ours, "offsets moved past rows that were never written"

        store.ensure_schema()  # the store is back: the kept batch goes in on the next retry
        wait_until_committed(provisioned, settings, marks)
        assert writer.health()["status"] == "ok"
    assert [r["price"] for r in stored_prices(store, venue)] == [t.price for t in ticks]


def test_an_exception_in_the_loop_is_logged_counted_retried_and_degraded_until_a_turn_succeeds(
    provisioned, kafka_bootstrap, chdb_dsn, database, store
):
    venue = unique_venue()
    ticks = [tick(venue, i * 10, 1.0 + i / 1e4) for i in range(30)]
    produce(provisioned, [("cc.prices", t, t.key().encode()) for t in ticks])
    marks = watermarks(provisioned)
    labels = {"service": "store-clickhouse", "task": "write_loop"}
    before = REGISTRY.get_sample_value("syi_task_failures_total", labels) or 0.0
    broken = threading.Event()
    broken.set()

    def inject(writer: ClickHouseWriter) -> None:
        take = writer._take

        def failing_take(message) -> None:  # a bug that strikes any message, until it is "fixed"
            if broken.is_set() and message.error() is None:
                raise RuntimeError("injected: a bug in the write loop")
            take(message)

        writer._take = failing_take  # type: ignore[method-assign]

    settings = writer_settings(kafka_bootstrap, chdb_dsn, database)
    with capture_logs() as logs, running_writer(settings, inject) as writer:
        wait_for(lambda: (REGISTRY.get_sample_value("syi_task_failures_total", labels) or 0) >= before + 2, 60,
                 "the failing turn to be retried")
        health = writer.health()
        broken.clear()
        wait_until_committed(provisioned, settings, marks)  # re-read from the committed offsets: nothing skipped
        wait_for(lambda: writer.health()["status"] == "ok", 30, "health ok again")
    assert health["status"] == "degraded"
    assert any(reason.startswith("task write_loop: failed") and "injected" in reason for reason in health["reasons"])
    assert [r["price"] for r in stored_prices(store, venue)] == [t.price for t in ticks]
    failed = [e for e in logs if e["event"] == "task_failed"]
    assert failed and failed[0]["task"] == "write_loop" and isinstance(failed[0]["exc_info"], RuntimeError)
    # recovered once the bug is gone (and possibly before: a turn without messages is progress too)
    recovered = [e["task"] for e in logs if e["event"] == "task_recovered"]
    assert recovered and set(recovered) == {"write_loop"}
