"""Faults by hand, on the whole system as `make up` starts it (replay server, the
real ingesters, calculators, stores, gateway, API) on free ports: a far-future tick then
ingest-binance SIGKILLed for 60 s, and the broker SIGKILLed for 30 s with every service's
health watched. Minutes of start-up and outages: `make test-long` only (SYI_FAULTS_LONG=1)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from syi_cli.stack.system import Ports
from syi_shared.settings import ServiceSettings
from syi_shared.timefmt import millis, time_text
from tests.conftest import REPO_ROOT, free_port, free_port_pair
from tests.faults.feed import Delivery, now_ms, produce_one
from tests.faults.hostile import FAR_FUTURE, valid
from tests.faults.pipeline import FAULTS_LONG, RSS_LIMIT_MB, SKEW_MS, early, published_since, rss_mb
from tests.ray_calc.streams import wait_for

pytestmark = [
    pytest.mark.faults, pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(1500),
    pytest.mark.skipif(not FAULTS_LONG, reason="minutes long: `make test-long` (SYI_FAULTS_LONG=1)"),
]

SYI = str(REPO_ROOT / ".venv" / "bin" / "syi")
INGESTER_OUTAGE_S = 60
RESUME_WITHIN_S = 120
BROKER_OUTAGE_S = 30
# Services that read or write Kafka, so must say `degraded` while no broker is reachable
# (the replay server and the REST API, which reads PostgreSQL, do not use it).
KAFKA_SERVICES = ("ingest-binance", "ingest-defillama", "ingest-fred", "ray-calc", "syi-calc", "store-timescale",
                  "store-clickhouse", "ws-gateway")


@dataclass
class Stack:
    env: dict[str, str]
    state: Path
    ports: Ports
    settings: ServiceSettings

    def syi(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SYI, *args], cwd=REPO_ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def pid(self, name: str) -> int:
        return int((self.state / "pids" / f"{name}.pid").read_text())

    def port(self, name: str) -> int:
        return getattr(self.ports, {"ingest-binance": "binance", "ingest-defillama": "defillama",
                                    "ingest-fred": "fred", "rest-api": "api", "ws-gateway": "gateway"}
                       .get(name, name.replace("-", "_")))

    def health(self, name: str) -> tuple[int | None, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port(name)}/healthz", timeout=5) as response:
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, orjson.loads(error.read() or b"{}")
        except (OSError, orjson.JSONDecodeError):
            return None, {}

    def kill(self, name: str) -> None:
        pid = self.pid(name)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or ") Z " in Path(f"/proc/{pid}/stat").read_text(),
                 30, f"{name} gone")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("whole-system")
    ports = Ports(**{name: free_port() for name in Ports.__dataclass_fields__})
    kafka_port = free_port_pair()
    env = {
        **os.environ,
        "SYI_STATE_DIR": str(root / "state"),
        "SYI_CACHE_DIR": str(REPO_ROOT / ".cache"),
        "SYI_KAFKA_PORT": str(kafka_port),
        "SYI_PG_PORT": str(free_port()),
        **{f"SYI_STACK_PORT_{name.upper()}": str(getattr(ports, name)) for name in Ports.__dataclass_fields__},
    }
    env.pop("SYI_KAFKA_BOOTSTRAP_SERVERS", None)
    stack = Stack(env, root / "state", ports, ServiceSettings(kafka_bootstrap_servers=f"127.0.0.1:{kafka_port}"))
    try:
        up = stack.syi("stack", "up", timeout=720)
        assert up.returncode == 0, f"stack up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        yield stack
    finally:
        stack.syi("stack", "down", timeout=180)


def test_far_future_tick_then_ingest_binance_killed_for_60_s(stack: Stack) -> None:
    since = now_ms()
    key, tick = valid("cc.prices", since)
    future = produce_one(stack.settings, "cc.prices", key,
                         orjson.dumps({**tick, "event_time": FAR_FUTURE, "ingest_time": FAR_FUTURE}))
    assert isinstance(future, Delivery), future
    time.sleep(10)  # every feed live

    stack.kill("ingest-binance")
    peak, ahead = 0.0, []
    deadline = time.monotonic() + INGESTER_OUTAGE_S
    while time.monotonic() < deadline:
        peak = max(peak, rss_mb(stack.pid("ray-calc")))
        for name in ("ray-calc", "syi-calc"):
            closed = stack.health(name)[1].get("last_closed_bucket")
            if closed and millis(closed) > now_ms() + SKEW_MS:
                ahead.append(f"{time_text(now_ms())}: {name} closed {closed}")
        if ahead or peak >= RSS_LIMIT_MB:
            break  # a run-away: stop here, before it fills the machine
        time.sleep(1)
    assert ahead == [] and peak < RSS_LIMIT_MB, f"ray-calc peak RSS {peak:.0f} MB; {ahead[:3]}"

    restart = stack.syi("stack", "restart", "ingest-binance")
    assert restart.returncode == 0, restart.stdout + restart.stderr
    back = now_ms()
    resumed = wait_for(
        lambda: [r for r in published_since(stack.settings, "syi.calculated", since) if r.bucket_ms > back],
        RESUME_WITHIN_S + 30, "the index of a minute after ingest-binance's return", interval=2,
    )
    assert millis(resumed[0].value["published_at"]) - back <= RESUME_WITHIN_S * 1000
    for topic in ("ray.calculated", "syi.calculated"):
        assert early(published_since(stack.settings, topic, since)) == [], topic


def test_broker_killed_for_30_s_every_service_says_degraded_then_ok(stack: Stack) -> None:
    since = now_ms()
    stack.kill("kafka")
    killed = now_ms()
    during: dict[str, list[tuple[int, int | None, dict]]] = {name: [] for name in KAFKA_SERVICES}
    while now_ms() < killed + BROKER_OUTAGE_S * 1000:
        for name in KAFKA_SERVICES:
            during[name].append((now_ms(), *stack.health(name)))
        time.sleep(1)
    up = stack.syi("stack", "up", "--no-wait")  # starts what is missing: the broker
    assert up.returncode == 0, up.stdout + up.stderr
    back = now_ms()

    problems = []
    for name, probes in during.items():
        settled = [(at, http, body) for at, http, body in probes if at >= killed + 20_000]
        wrong = [(time_text(at), http, body.get("status")) for at, http, body in settled
                 if http != 200 or body.get("status") != "degraded" or not body.get("reasons")]
        if not settled or wrong:
            problems.append(f"{name} while the broker was away: {wrong[:3] or 'no probe'}")
    gateway = [body.get("kafka") for at, _, body in during["ws-gateway"] if at >= killed + 20_000]
    if set(gateway) != {"down"}:
        problems.append(f"ws-gateway said kafka: {sorted(set(map(str, gateway)))}")
    assert problems == [], "\n".join(problems)

    def all_ok() -> bool:
        return all(stack.health(name)[1].get("status") == "ok" for name in KAFKA_SERVICES)

    wait_for(all_ok, 120, "every service ok after the broker's return", interval=2)
    wait_for(lambda: [r for r in published_since(stack.settings, "syi.calculated", since) if r.bucket_ms > back],
             150, "the index of a minute after the broker's return", interval=2)
    assert early(published_since(stack.settings, "syi.calculated", since)) == []
