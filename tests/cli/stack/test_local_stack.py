"""`syi stack up/down` for real: a Kafka broker and a PostgreSQL cluster of their own."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from syi_shared.topics import all_topics
from tests.conftest import free_port, free_port_pair
from tests.faults.cluster import free_port_block

pytestmark = pytest.mark.integration

SYI = [sys.executable, "-m", "syi_cli.main"]


def syi(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SYI, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=300)


def pids(state_dir: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in (state_dir / "pids").glob("*.pid")}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and ") Z" not in Path(f"/proc/{pid}/stat").read_text()


def test_up_twice_then_down_leaves_nothing(tmp_path):
    kafka_port, pg_port = free_port_pair(), free_port()
    env = {"SYI_STATE_DIR": str(tmp_path), "SYI_KAFKA_PORT": str(kafka_port), "SYI_PG_PORT": str(pg_port)}
    try:
        first = syi(env, "stack", "up", "--infra-only")
        assert first.returncode == 0, first.stderr
        started = pids(tmp_path)
        assert set(started) == {"kafka", "postgres"}

        # every registry topic is there, as a plain Kafka client sees it
        if shutil.which("kcat"):
            listing = subprocess.run(["kcat", "-b", f"127.0.0.1:{kafka_port}", "-L"], capture_output=True, text=True,
                                     timeout=60).stdout
            listed = set(re.findall(r'topic "([^"]+)"', listing))
        else:
            from confluent_kafka.admin import AdminClient

            listed = set(AdminClient({"bootstrap.servers": f"127.0.0.1:{kafka_port}"}).list_topics(timeout=10).topics)
        assert {t.name for t in all_topics()} <= listed

        second = syi(env, "stack", "up", "--infra-only")
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stderr
        assert pids(tmp_path) == started  # no second broker
        assert "0 created" in second.stderr

        status = syi(env, "stack", "status")
        assert status.returncode == 0 and status.stdout.count("healthy") == 2
    finally:
        down = syi(env, "stack", "down")
    assert down.returncode == 0, down.stderr
    assert not pids(tmp_path)
    assert not any(alive(pid) for pid in started.values())
    shutil.rmtree(f"/tmp/syi-postgres-{pg_port}", ignore_errors=True)


def wait_status(env: dict[str, str], done: Callable[[subprocess.CompletedProcess], bool],
                timeout: float = 90.0) -> subprocess.CompletedProcess:
    deadline = time.monotonic() + timeout
    while True:
        status = syi({**env, "COLUMNS": "200"}, "stack", "status")
        if done(status) or time.monotonic() > deadline:
            return status
        time.sleep(2)


def states(status: subprocess.CompletedProcess) -> dict[str, str]:
    rows = [line.split("│") for line in status.stdout.splitlines() if line.count("│") > 3]
    return {row[1].strip(): row[3].strip() for row in rows}


def test_three_brokers_up_status_kill_rejoin_down(tmp_path):
    """`syi stack up --brokers 3`: three KRaft nodes, every topic on all three with two in sync;
    `status` shows each broker; one SIGKILLed shows dead, `up` starts it again and it rejoins."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    kafka_port, pg_port = free_port_block(6), free_port()
    bootstrap = ",".join(f"127.0.0.1:{kafka_port + 2 * i}" for i in range(3))
    env = {"SYI_STATE_DIR": str(tmp_path), "SYI_KAFKA_PORT": str(kafka_port), "SYI_PG_PORT": str(pg_port)}
    started: dict[str, int] = {}
    try:
        first = syi(env, "stack", "up", "--infra-only", "--brokers", "3")
        assert first.returncode == 0, first.stderr
        assert "replication factor 3, min.insync.replicas 2" in first.stderr
        assert f"Kafka {bootstrap}," in first.stderr
        started = pids(tmp_path)
        assert set(started) == {"kafka-1", "kafka-2", "kafka-3", "postgres"}

        # a plain Kafka client sees three brokers (kcat -L, as docs/operations.md says)
        listing = subprocess.run(["kcat", "-b", f"127.0.0.1:{kafka_port}", "-L"], capture_output=True, text=True,
                                 timeout=60).stdout
        assert " 3 brokers:" in listing, listing
        assert {f"127.0.0.1:{kafka_port + 2 * i}" for i in range(3)} <= set(re.findall(r"at (\S+)", listing))
        # every registry topic: three copies of every partition, two in sync to acknowledge a write
        admin = AdminClient({"bootstrap.servers": bootstrap})
        metadata = admin.list_topics(timeout=10)
        for topic in all_topics():
            assert {len(p.replicas) for p in metadata.topics[topic.name].partitions.values()} == {3}, topic.name
        resources = [ConfigResource(ConfigResource.Type.TOPIC, t.name) for t in all_topics()]
        for resource, future in admin.describe_configs(resources).items():
            assert future.result()["min.insync.replicas"].value == "2", resource.name

        status = wait_status(env, lambda s: s.returncode == 0)
        assert status.returncode == 0, status.stdout + status.stderr
        assert all(states(status)[f"kafka-{n}"] == "healthy" for n in (1, 2, 3))
        assert f"kafka: 3 of 3 brokers in sync ({bootstrap})" in status.stdout

        os.kill(started["kafka-2"], signal.SIGKILL)
        status = wait_status(env, lambda s: states(s).get("kafka-2") == "dead")
        assert status.returncode == 1 and states(status)["kafka-2"] == "dead", status.stdout
        assert states(status)["kafka-1"] != "dead" and states(status)["kafka-3"] != "dead"

        refused = syi(env, "stack", "up", "--infra-only", "--brokers", "1")  # another size while it runs
        assert refused.returncode != 0 and "syi stack down" in refused.stderr, refused.stderr

        again = syi(env, "stack", "up", "--infra-only")  # the running cluster's size: restarts the dead node
        assert again.returncode == 0, again.stderr
        assert "kafka-2: started" in again.stderr and "kafka-1: already running" in again.stderr
        started = pids(tmp_path)
        status = wait_status(env, lambda s: s.returncode == 0)
        assert status.returncode == 0, status.stdout  # back in the ISR of every partition it holds
        assert "kafka: 3 of 3 brokers in sync" in status.stdout
    finally:
        down = syi(env, "stack", "down")
    assert down.returncode == 0, down.stderr
    assert not pids(tmp_path)
    assert not any(alive(pid) for pid in started.values())
    shutil.rmtree(f"/tmp/syi-postgres-{pg_port}", ignore_errors=True)
