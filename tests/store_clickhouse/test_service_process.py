"""store-clickhouse as a process: consume, SIGTERM, the pending batch is written and committed.

The service owns its chDB path while it runs; the store is read afterwards by the query
CLI in a subprocess (this test process holds the session's chDB path).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest

from tests.conftest import free_port
from tests.store_clickhouse.kafka_progress import caught_up, message_count, produce, wait_for, watermarks
from tests.store_clickhouse.records import book, index_value, tick, unique_venue

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def query_cli(dsn: str, *args: str) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-m", "store_clickhouse.queries", *args, "--dsn", dsn],
        capture_output=True, timeout=120, check=True,
    )
    return [orjson.loads(line) for line in done.stdout.splitlines()]


def service_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYI_")}
    return {**env, "SYI_LOG_FORMAT": "json", **values}


def test_sigterm_writes_the_pending_batch_commits_and_exits_cleanly(provisioned, kafka_bootstrap, tmp_path: Path):
    venue, index_id = unique_venue(), f"E{uuid.uuid4().hex[:8].upper()}"
    ticks = [tick(venue, i * 113, 1.0 + i / 1e5) for i in range(250)]
    books = [book(venue, i * 1000, [(0.9999, 100.0)], [(1.0001, 50.0)]) for i in range(30)]
    values = [index_value(index_id, m, 4.2) for m in range(4)]
    produce(provisioned, [(t, v, v.key().encode()) for t, vs in
                          (("cc.prices", ticks), ("cc.orderbook", books), ("syi.calculated", values)) for v in vs])
    marks = watermarks(provisioned)
    group, port, dsn = f"e2e-{uuid.uuid4().hex[:8]}", free_port(), f"chdb://{tmp_path / 'chdb'}"

    log = (tmp_path / "service.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "store_clickhouse"],
        env=service_env(
            SYI_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, SYI_CLICKHOUSE_DSN=dsn, SYI_HEALTH_PORT=str(port),
            SYI_CLICKHOUSE_CONSUMER_GROUP=group,
            # nothing is written before SIGTERM: the final flush must do it all
            SYI_CLICKHOUSE_BATCH_MAX_SECONDS="3600", SYI_CLICKHOUSE_BATCH_MAX_MESSAGES="1000000",
        ),
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        health_url = f"http://127.0.0.1:{port}/healthz"
        expected = message_count(provisioned)
        wait_for(lambda: get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 90, "/readyz to answer 200")

        def all_consumed_and_pending() -> bool:
            # Two counters: a read between their two increments sees them one apart.
            health = orjson.loads(get(health_url)[1])
            return health["consumed"] >= expected and health["pending"] == health["consumed"]

        wait_for(all_consumed_and_pending, 90, "every message consumed and pending")
        health = orjson.loads(get(health_url)[1])
        assert health["status"] == "ok" and health["store"] == dsn
        assert health["pending"] == health["consumed"] and health["committed_batches"] == 0
        status, metrics = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert b'syi_messages_consumed_total{service="store-clickhouse",topic="cc.prices"}' in metrics
        assert not caught_up(provisioned, group, marks)  # nothing committed before the rows are in

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()

    assert caught_up(provisioned, group, marks), "offsets of the final batch were not committed"
    bars = query_cli(dsn, "ohlc", "--symbol", "USDC", "--venue", venue)
    assert sum(bar["ticks"] for bar in bars) == 250
    assert bars[0]["open"] == 1.0 and bars[-1]["close"] == ticks[-1].price
    depth = query_cli(dsn, "depth", "--symbol", "USDC", "--venue", venue)
    assert sum(row["snapshots"] for row in depth) == 30
    history = query_cli(dsn, "index", "--index-id", index_id)
    assert [row["bucket_end"] for row in history] == [v.bucket_end for v in values]
    log_events = [orjson.loads(line)["event"] for line in (tmp_path / "service.log").read_bytes().splitlines()
                  if line.startswith(b"{")]
    assert "schema_ready" in log_events and log_events[-1] == "stopped"


def test_unreachable_store_fails_fast_naming_the_setting(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "store_clickhouse"],
        env=service_env(SYI_CLICKHOUSE_DSN=f"http://user:secret@127.0.0.1:{free_port()}/db", SYI_HEALTH_PORT="0"),
        capture_output=True, timeout=120,
    )
    assert done.returncode == 2
    assert b"SYI_CLICKHOUSE_DSN" in done.stderr and b"store_unavailable" in done.stderr
    assert b"secret" not in done.stderr  # the password never reaches the log
