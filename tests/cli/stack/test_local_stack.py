"""`syi stack up/down` for real: a Kafka broker and a PostgreSQL cluster of their own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from syi_shared.topics import all_topics
from tests.conftest import free_port, free_port_pair

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
