"""Health that tells the truth when the broker dies: an ingester (producer), a store writer (group
consumer) and ws-gateway (assigned follower) run as processes against a broker of the test's own,
which is SIGKILLed and started again on its data (the session broker stays up for the rest).

Each must say `degraded` within 15 s (plus probe slack) with /healthz still 200 (no restart storm)
and /readyz 503, ws-gateway must say `"kafka": "down"`, and all must be `ok` again once the broker
is back (docs/operations.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, free_port
from tests.faults.broker import OwnBroker
from tests.faults.pipeline import probe_port as probe
from tests.replay_server.harness import ReplayServer, replay, replay_process  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

DEGRADED_WITHIN_S = 15  # the health contract
SLACK_S = 5  # probe spacing and process scheduling on a busy 2-core machine
OK_AGAIN_WITHIN_S = 60


@dataclass
class Service:
    name: str
    module: str
    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    def start(self, log_dir: Path) -> None:
        log = (log_dir / f"{self.name}.log").open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", self.module], cwd=REPO_ROOT,
                                        env={**os.environ, "SYI_LOG_FORMAT": "json", **self.env},
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.poll() if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def wait_all(services: list[Service], ready: bool, timeout: float, what: str) -> float:
    """Seconds until every service's /readyz answers 200 (ready) or /healthz says degraded."""
    started = time.monotonic()
    while True:
        answers = {s.name: probe(s.port, "/readyz" if ready else "/healthz") for s in services}
        if ready and all(a.http == 200 for a in answers.values()):
            return time.monotonic() - started
        if not ready and all(a.status == "degraded" for a in answers.values()):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s: {answers}")
        time.sleep(0.5)


@pytest.fixture
def services(tmp_path: Path, replay: ReplayServer) -> Iterator[tuple[OwnBroker, list[Service]]]:  # noqa: F811
    broker = OwnBroker(tmp_path / "broker").start()
    kafka = broker.provision().kafka_bootstrap_servers
    assert kafka is not None
    replay.control(seek_s=0, speed=0)
    common = {"SYI_KAFKA_BOOTSTRAP_SERVERS": kafka}
    ports = [free_port() for _ in range(3)]
    running = [
        Service("ingest-defillama", "ingest_defillama", ports[0], {
            **common, "SYI_HEALTH_PORT": str(ports[0]), "SYI_DEFILLAMA_YIELDS_URL": replay.url,
            "SYI_DEFILLAMA_STABLECOINS_URL": replay.url}),
        # syi.calculated only: its 3 min cadence outlasts the test, nothing feeds it here
        Service("store-clickhouse", "store_clickhouse", ports[1], {
            **common, "SYI_HEALTH_PORT": str(ports[1]), "SYI_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'chdb'}",
            "SYI_CLICKHOUSE_TOPICS": '["syi.calculated"]', "SYI_CLICKHOUSE_CONSUMER_GROUP": "outage"}),
        Service("ws-gateway", "ws_gateway", ports[2], {**common, "SYI_WS_PORT": str(ports[2])}),
    ]
    try:
        for service in running:
            service.start(tmp_path)
        yield broker, running
    finally:
        exits = {service.name: service.stop() for service in running}
        broker.stop()
        logs = {s.name: (tmp_path / f"{s.name}.log").read_text(errors="replace")[-2000:] for s in running}
        assert exits == {s.name: 0 for s in running}, logs  # every one stopped cleanly on SIGTERM


def test_every_kind_of_service_says_degraded_while_the_broker_is_dead_and_ok_once_it_is_back(services) -> None:
    broker, running = services
    wait_all(running, ready=True, timeout=90, what="every service ready before the outage")

    broker.kill()
    took = wait_all(running, ready=False, timeout=DEGRADED_WITHIN_S + SLACK_S, what="degraded after the kill")
    during = {s.name: (probe(s.port, "/healthz"), probe(s.port, "/readyz")) for s in running}
    broker.start()
    wait_all(running, ready=True, timeout=OK_AGAIN_WITHIN_S, what="ok again after the restart")
    after = {s.name: probe(s.port, "/healthz") for s in running}

    assert took <= DEGRADED_WITHIN_S + SLACK_S
    for name, (live, ready) in during.items():
        assert (live.http, live.status, ready.http) == (200, "degraded", 503), name  # alive, not ready
        assert any(reason.startswith("kafka: no broker reachable") for reason in live.body["reasons"]), live.body
    assert during["ws-gateway"][0].body["kafka"] == "down"
    assert {name: (answer.http, answer.status, answer.body["reasons"]) for name, answer in after.items()} == {
        s.name: (200, "ok", []) for s in running}
    assert after["ws-gateway"].body["kafka"] == "following"
