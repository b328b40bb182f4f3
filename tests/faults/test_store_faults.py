"""The store writers under faults (docs/storage.md, "The writer's loop"; docs/clickhouse.md):

* PostgreSQL stopped for longer than the writer's `max.poll.interval.ms` (lowered to 10 s) while a
  tape is played: store-timescale says `degraded` with the store's error, keeps its group
  membership (it polls with its partitions paused), and once the database is back it stores the
  rest; its tables then hold exactly the topic's records.
* store-timescale and store-clickhouse SIGKILLed at random moments (≥ 5 times each, always after
  they had joined their group) while a tape is replayed, and started again: each table then holds
  each of the tape's records exactly once, equal to the topic (at least once into upserts on the
  natural key).

Both writers run as processes (`python -m store_timescale`, `python -m store_clickhouse`) against
the session broker; each test's records carry a symbol, venue and index id of their own.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from pydantic import BaseModel

from store_clickhouse.tables import TABLE_FOR_TOPIC
from store_timescale.settings import TOPICS as TIMESCALE_TOPICS
from syi_cli.stack.postgres import PostgresCluster
from syi_cli.tape import play_tape
from syi_shared import serde
from syi_shared.kafka import read_to_end
from syi_shared.settings import ServiceSettings
from syi_shared.timefmt import millis
from syi_shared.topics import TOPICS
from tests.conftest import REPO_ROOT, free_port
from tests.faults.pipeline import Health, probe_port
from tests.store_clickhouse import records as ch
from tests.store_clickhouse.kafka_progress import committed_offsets, wait_for, watermarks
from tests.store_timescale import records as r
from tests.store_timescale.databases import fresh_database

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(300)]

KILLS = 5  # per writer
OUTAGE_S = 25.0  # PostgreSQL away: 2.5 x the writer's max.poll.interval.ms
MAX_POLL_INTERVAL_MS = 10_000
# A killed member is noticed by the group within its session: a restarted writer rejoins in ~6 s.
CONSUMER_CONFIG = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}

# store-timescale's tables: the column holding the record's key, per topic
TIMESCALE_TABLES = {
    "syi.calculated": ("index_values", "index_id"),
    "ray.calculated": ("ray_values", "symbol"),
    "metrics.peg": ("peg_metrics", "symbol"),
    "metrics.liquidity": ("liquidity_metrics", "symbol"),
    "dl.apy": ("pool_yields", "pool"),
    "ex.mktcap": ("market_caps", "symbol"),
    "trad.tbill": ("tbills", "series"),
}


# --------------------------------------------------------------------------- the tape


@dataclass(frozen=True)
class Tape:
    path: Path
    records: list[tuple[str, BaseModel]]
    symbol: str  # store-timescale's records
    venue: str  # store-clickhouse's ticks and books
    index_id: str  # both store the index

    @property
    def keys(self) -> set[str]:
        return {value.key() for _, value in self.records}  # type: ignore[attr-defined]

    def span_ms(self) -> tuple[int, int]:
        times = [millis(_event_time(value)) for _, value in self.records]
        return min(times), max(times)


def _event_time(value: BaseModel) -> str:
    return getattr(value, "event_time", None) or value.bucket_end  # type: ignore[attr-defined]


def make_store_tape(path: Path, minutes: int, topics: tuple[str, ...] | None = None) -> Tape:
    """`minutes` of every stored topic (or of `topics`) for a symbol, venue and index of their own,
    in event-time order (ticks every 2 s, books every 20 s, a minute's outputs at its end)."""
    symbol, venue = r.unique_symbol("K"), ch.unique_venue()
    index_id = symbol
    buckets = r.minutes("2026-11-27T10:01:00.000Z", minutes)
    records: list[tuple[str, BaseModel]] = []
    records += [("cc.prices", ch.tick(venue, ms, 1.0 + ms / 1e9)) for ms in range(0, minutes * 60_000, 2_000)]
    records += [("cc.orderbook", ch.book(venue, ms, [(0.9999, 1000.0 + ms / 1e3)], [(1.0001, 900.0)]))
                for ms in range(0, minutes * 60_000, 20_000)]
    for i, bucket in enumerate(buckets):
        records += [
            ("syi.calculated", r.index_value(bucket, 0.04 + i / 10_000, index_id=index_id)),
            ("ray.calculated", r.ray(symbol, bucket, 0.03 + i / 10_000)),
            ("metrics.peg", r.peg(symbol, bucket)),
            ("metrics.liquidity", r.liquidity(symbol, bucket)),
        ]
        if i % 5 == 0:
            records += [("dl.apy", r.pool_yield(f"pool-{symbol}", bucket)), ("ex.mktcap", r.market_cap(symbol, bucket))]
    records += [("trad.tbill", r.tbill(symbol, "2026-11-25", 4.12, event_time=buckets[0])),
                ("trad.tbill", r.tbill(symbol, "2026-11-26", 4.10, event_time=buckets[-1]))]
    records = [item for item in records if topics is None or item[0] in topics]
    records.sort(key=lambda item: millis(_event_time(item[1])))
    lines = [orjson.dumps({"topic": topic, "key": value.key(), "value": orjson.loads(serde.dumps(value))})
             for topic, value in records]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return Tape(path, records, symbol, venue, index_id)


def on_topics(settings: ServiceSettings, tape: Tape, topics: tuple[str, ...] | list[str]) -> dict[str, Counter]:
    """The tape's records as they are on `topics` now (read_committed), canonical JSON per topic."""
    found: dict[str, Counter] = {topic: Counter() for topic in topics}
    keys = {key.encode() for key in tape.keys}
    for message in read_to_end(list(topics), settings, timeout=60):
        if message.key() in keys:
            model = TOPICS[message.topic()].model.model_validate(orjson.loads(message.value()))
            found[message.topic()][serde.dumps(model)] += 1
    return found


# --------------------------------------------------------------------------- the writers


@dataclass
class Writer:
    """A store writer as a process; started again after each SIGKILL, on the same group and store."""

    module: str
    env: dict[str, str]
    log_dir: Path
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    consumer_extra: dict[str, Any] = field(default_factory=dict)  # more librdkafka consumer properties
    kills: int = 0
    runs: int = 0
    log_offset: int = 0  # where the current run's log lines start
    exits: list[int | None] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.module}.log"

    def start(self) -> Writer:
        self.port = free_port()
        self.runs += 1
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                env={**{k: v for k, v in os.environ.items() if not k.startswith("SYI_")}, **self.env,
                     "SYI_HEALTH_PORT": str(self.port), "SYI_LOG_FORMAT": "json",
                     "SYI_CONSUMER_CONFIG": orjson.dumps(CONSUMER_CONFIG | self.consumer_extra).decode()},
            )
        return self

    def kill(self) -> None:
        assert self.process is not None and self.process.poll() is None, f"{self.module} died:\n{self.tail()}"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self.kills += 1

    def stop(self) -> int | None:
        """SIGTERM (the final batch written and committed); the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.exits.append(self.process.returncode)
        return self.process.returncode

    def events(self, name: str, since: int = 0) -> list[dict[str, Any]]:
        """The JSON log events called `name`, from byte `since` of the log on."""
        with self.log_path.open("rb") as log:
            log.seek(since)
            text = log.read()
        found = []
        for line in text.splitlines():
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # librdkafka's own lines
            if isinstance(event, dict) and event.get("event") == name:
                found.append(event)
        return found

    def health(self) -> Health:
        return probe_port(self.port)

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def caught_up(settings: ServiceSettings, group: str, marks: dict, topics: list[str]) -> bool:
    done = committed_offsets(settings, group, topics)
    return all(end == low or done.get(place, -1) >= end for place, (low, end) in marks.items())


def kill_at_random(writer: Writer, rng: random.Random, until: threading.Event, kills: int) -> None:
    """SIGKILL `writer` a random 0.2–2.5 s after each run has joined its group (so mid-batch,
    mid-write or mid-commit), start it again after up to 1 s; until `until` is set and `kills` done."""
    while writer.kills < kills or not until.is_set():
        deadline = time.monotonic() + 60
        while not writer.events("partitions_assigned", since=writer.log_offset):  # this run has joined
            assert writer.process is not None and writer.process.poll() is None, f"died:\n{writer.tail()}"
            assert time.monotonic() < deadline, f"{writer.module} never joined its group:\n{writer.tail()}"
            time.sleep(0.2)
        time.sleep(rng.uniform(0.2, 2.5))
        writer.kill()
        time.sleep(rng.uniform(0.0, 1.0))
        writer.start()


# --------------------------------------------------------------------------- store-timescale's tables


async def _timescale_rows(dsn: str, tape: Tape) -> dict[str, Counter]:
    conn = await asyncpg.connect(dsn)
    try:
        found: dict[str, Counter] = {}
        for topic, (table, column) in TIMESCALE_TABLES.items():
            key = f"pool-{tape.symbol}" if table == "pool_yields" else tape.symbol
            try:
                rows = await conn.fetch(f"SELECT record FROM {table} WHERE {column} = $1", key)
            except asyncpg.UndefinedTableError:
                rows = []  # not migrated yet
            model = TOPICS[topic].model
            found[topic] = Counter(serde.dumps(model.model_validate(orjson.loads(row["record"]))) for row in rows)
        return found
    finally:
        await conn.close()


def timescale_rows(dsn: str, tape: Tape) -> dict[str, Counter]:
    """The tape's records as store-timescale's tables hold them, canonical JSON per topic."""
    return asyncio.run(_timescale_rows(dsn, tape))


@pytest.fixture
def timescale_dsn(postgres_dsn: str) -> Iterator[str]:
    loop = asyncio.new_event_loop()
    manager = fresh_database(postgres_dsn)
    try:
        yield loop.run_until_complete(manager.__aenter__())
    finally:
        loop.run_until_complete(manager.__aexit__(None, None, None))
        loop.close()


# --------------------------------------------------------------------------- store-clickhouse's tables

_CLICKHOUSE_QUERY = """
import sys, orjson
from store_clickhouse.clickhouse_store import ClickHouseStore
from syi_shared.timefmt import format_utc
from datetime import UTC
store = ClickHouseStore.open(sys.argv[1])
venue, index_id, symbol = sys.argv[2], sys.argv[3], sys.argv[4]
def q(sql, **p):
    return store.query(sql, p)
t = lambda d: format_utc(d.replace(tzinfo=UTC))
out = {
  "prices": [[t(x["event_time"]), x["price"]] for x in q("SELECT event_time, price FROM prices FINAL WHERE venue = {v:String} ORDER BY event_time", v=venue)],
  "orderbook": [t(x["event_time"]) for x in q("SELECT event_time FROM orderbook FINAL WHERE venue = {v:String} ORDER BY event_time", v=venue)],
  "index_values": [x["cid"] for x in q("SELECT cid FROM index_values FINAL WHERE index_id = {i:String} ORDER BY bucket_end", i=index_id)],
  "pool_yields": [t(x["event_time"]) for x in q("SELECT event_time FROM pool_yields FINAL WHERE pool = {p:String} ORDER BY event_time", p="pool-" + symbol)],
  "market_caps": [t(x["event_time"]) for x in q("SELECT event_time FROM market_caps FINAL WHERE symbol = {s:String} ORDER BY event_time", s=symbol)],
  "tbills": [[t(x["event_time"]), x["observation_date"]] for x in q("SELECT event_time, observation_date FROM tbills FINAL WHERE series = {s:String} ORDER BY event_time", s=symbol)],
  "inserted": q("SELECT count() AS n FROM prices WHERE venue = {v:String}", v=venue)[0]["n"],
}
sys.stdout.buffer.write(orjson.dumps(out))
"""


def clickhouse_rows(dsn: str, tape: Tape) -> dict[str, Any]:
    """What store-clickhouse's tables hold of the tape (FINAL: as every reader sees them), read in a
    subprocess: a process opens one chDB path, and the test session may hold another."""
    done = subprocess.run([sys.executable, "-c", _CLICKHOUSE_QUERY, dsn, tape.venue, tape.index_id, tape.symbol],
                          capture_output=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return orjson.loads(done.stdout)


# --------------------------------------------------------------------------- the tests


def test_a_postgres_outage_longer_than_max_poll_interval_is_ridden_out_and_the_table_equals_the_topic(
    provisioned, tmp_path: Path
):
    tape = make_store_tape(tmp_path / "tape.jsonl", minutes=10, topics=TIMESCALE_TOPICS)
    first_ms, last_ms = tape.span_ms()
    middle_ms = (first_ms + last_ms) // 2
    # a cluster of the test's own, so stopping it leaves the session's for the other tests
    cluster = PostgresCluster(tmp_path / "pg-state", port=free_port())
    cluster.init(say=lambda m: None)
    postgres = cluster.process()
    postgres.start()
    group = f"store-timescale-outage-{uuid.uuid4().hex[:8]}"
    writer = Writer("store_timescale", {
        "SYI_KAFKA_BOOTSTRAP_SERVERS": provisioned.kafka_config()["bootstrap.servers"],
        "SYI_GROUP_ID": group, "SYI_RETENTION_ENABLED": "false",
    }, tmp_path, consumer_extra={"max.poll.interval.ms": MAX_POLL_INTERVAL_MS})
    try:
        postgres.wait_ready(timeout=60)
        cluster.ensure_database()
        writer.env["SYI_POSTGRES_DSN"] = cluster.dsn
        writer.start()
        play_tape(tape.path, provisioned, end_ms=middle_ms)
        before = on_topics(provisioned, tape, TIMESCALE_TOPICS)
        wait_for(lambda: timescale_rows(cluster.dsn, tape) == before, 90, "the first half to be stored")
        assert writer.health().status == "ok", writer.health()

        postgres.stop()
        stopped = time.monotonic()
        play_tape(tape.path, provisioned, start_ms=middle_ms)  # the second half arrives during the outage
        during: list[Health] = []
        while time.monotonic() < stopped + OUTAGE_S:
            during.append(writer.health())
            time.sleep(1)
        postgres = cluster.process()
        postgres.start()
        postgres.wait_ready(timeout=60)

        marks = watermarks(provisioned, list(TIMESCALE_TOPICS))
        wait_for(lambda: caught_up(provisioned, group, marks, list(TIMESCALE_TOPICS)), 120,
                 f"the writer to store and commit the rest:\n{writer.tail()}")
        wait_for(lambda: writer.health().status == "ok", 60, "health ok again")
        expected = on_topics(provisioned, tape, TIMESCALE_TOPICS)
        stored = timescale_rows(cluster.dsn, tape)
        assert writer.stop() == 0, writer.tail()
    finally:
        writer.stop()
        postgres.stop()
        shutil.rmtree(cluster.home, ignore_errors=True)

    assert all(h.http == 200 for h in during), "liveness must hold through a database outage (no restart storm)"
    degraded = [h for h in during if h.status == "degraded"]
    assert len(degraded) >= len(during) - 3, [h.body for h in during]  # within a few seconds of the stop
    assert any(reason.startswith("store: ") for reason in degraded[-1].body["reasons"]), degraded[-1].body
    assert sum(expected[t].total() for t in expected) == len(tape.records)
    assert stored == expected  # every record of the tape, once, as on the topic
    # kept its membership through the outage: one assignment, no batch dropped by an eviction
    assert len(writer.events("partitions_assigned")) == 1, writer.tail(80)
    assert writer.events("batch_dropped_on_revoke") == []


def test_sigkilled_store_writers_hold_each_record_exactly_once_equal_to_the_topic(
    provisioned, timescale_dsn: str, tmp_path: Path
):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    tape = make_store_tape(tmp_path / "tape.jsonl", minutes=30)
    bootstrap = provisioned.kafka_config()["bootstrap.servers"]
    ts_group, ch_group = (f"{name}-kills-{uuid.uuid4().hex[:8]}" for name in ("store-timescale", "store-clickhouse"))
    chdb = f"chdb://{tmp_path / 'chdb'}"
    writers = [
        Writer("store_timescale", {"SYI_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SYI_POSTGRES_DSN": timescale_dsn,
                                   "SYI_GROUP_ID": ts_group, "SYI_RETENTION_ENABLED": "false"}, tmp_path),
        Writer("store_clickhouse", {"SYI_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SYI_CLICKHOUSE_DSN": chdb,
                                    "SYI_CLICKHOUSE_CONSUMER_GROUP": ch_group}, tmp_path),
    ]
    played = threading.Event()
    failures: list[BaseException] = []

    def guarded(body, *args) -> None:
        try:
            body(*args)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)
            played.set()

    def player() -> None:
        play_tape(tape.path, provisioned, speed=40.0)  # 30 min of event time in 45 s
        played.set()

    threads = [threading.Thread(target=guarded, args=(player,), daemon=True)]
    threads += [threading.Thread(target=guarded, args=(kill_at_random, w, random.Random(rng.random()), played, KILLS),
                                 daemon=True) for w in writers]
    try:
        for writer in writers:
            writer.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(240)
        assert not failures, f"seed {seed}: {failures[0]!r}"
        assert not any(t.is_alive() for t in threads), f"seed {seed}: the replay or the kills did not finish"
        for writer, group, topics in ((writers[0], ts_group, list(TIMESCALE_TOPICS)),
                                      (writers[1], ch_group, list(TABLE_FOR_TOPIC))):
            marks = watermarks(provisioned, topics)
            wait_for(lambda: caught_up(provisioned, group, marks, topics), 120,
                     f"{writer.module} to catch up (seed {seed}):\n{writer.tail()}")
        exits = [writer.stop() for writer in writers]
    finally:
        for writer in writers:
            writer.stop()
    assert exits == [0, 0], [w.tail() for w in writers]
    assert all(w.kills >= KILLS for w in writers), [w.kills for w in writers]

    expected = on_topics(provisioned, tape, (*TIMESCALE_TOPICS, "cc.prices", "cc.orderbook"))
    assert sum(c.total() for c in expected.values()) == len(tape.records), f"seed {seed}: the tape is not all on Kafka"
    # store-timescale: every record once, as on the topic
    stored = timescale_rows(timescale_dsn, tape)
    assert stored == {t: expected[t] for t in TIMESCALE_TOPICS}, f"seed {seed}"

    # store-clickhouse: every record once (as read with FINAL, like every reader), as on the topic
    rows = clickhouse_rows(chdb, tape)
    ticks = sorted((v.event_time, v.price) for t, v in tape.records if t == "cc.prices")  # type: ignore[attr-defined]
    books = sorted(v.event_time for t, v in tape.records if t == "cc.orderbook")  # type: ignore[attr-defined]
    index = [v.cid for t, v in tape.records if t == "syi.calculated"]  # type: ignore[attr-defined]
    assert [tuple(x) for x in rows["prices"]] == ticks, f"seed {seed}"
    assert rows["orderbook"] == books, f"seed {seed}"
    assert rows["index_values"] == index, f"seed {seed}"
    # the archive of the other raw inputs (what `syi tape record --from-archive` reads back)
    def times(topic: str) -> list[str]:
        return sorted(v.event_time for t, v in tape.records if t == topic)  # type: ignore[attr-defined]
    assert rows["pool_yields"] == times("dl.apy") and rows["market_caps"] == times("ex.mktcap"), f"seed {seed}"
    tbills = sorted((v.event_time, v.observation_date) for t, v in tape.records if t == "trad.tbill")  # type: ignore[attr-defined]
    assert [tuple(x) for x in rows["tbills"]] == tbills, f"seed {seed}"
    assert rows["inserted"] >= len(ticks)  # redelivered batches may sit in unmerged parts; FINAL collapses them
