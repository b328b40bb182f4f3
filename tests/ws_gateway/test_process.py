"""`python -m ws_gateway` as a process: settings from the environment, healthy, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import orjson
import pytest

from tests.conftest import REPO_ROOT, free_port

pytestmark = pytest.mark.e2e


def health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:  # noqa: S310
            return orjson.loads(response.read())
    except (urllib.error.URLError, OSError):
        return None


def test_runs_as_a_process_from_environment_settings_and_stops_on_sigterm(provisioned):
    port = free_port()
    env = {
        **os.environ,
        "SYI_KAFKA_BOOTSTRAP_SERVERS": provisioned.kafka_bootstrap_servers,
        "SYI_WS_PORT": str(port),
        "SYI_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "ws_gateway"], env=env, cwd=REPO_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        report = None
        while time.monotonic() < deadline and process.poll() is None:
            report = health(port)
            if report and report["status"] == "ok":
                break
            time.sleep(0.2)
        assert report and report["status"] == "ok" and report["kafka"] == "following", report
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    events = [orjson.loads(line)["event"] for line in process.stdout.read().splitlines() if line.startswith(b"{")]
    assert "listening" in events and "following" in events and events[-1] == "stopped"
