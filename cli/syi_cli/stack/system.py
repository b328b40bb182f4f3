"""The whole system on one machine: every service as its own background process.

Each service gets its settings through environment variables only (the same ones a
container would get), its own log file and pid file under the state folder, and a
health URL that `status` and `up` poll.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime, timedelta
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from syi_cli.paths import DEFAULT_METHODOLOGY, REPO_ROOT
from syi_cli.stack.processes import ManagedProcess
from syi_cli.stack.service_health import Health, read_health

if TYPE_CHECKING:
    from syi_shared.settings import ServiceSettings

Say = Callable[[str], None]


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    port: int  # where /healthz (and usually /metrics) answers
    port_env: str  # the service setting that moves it
    health_path: str = "/healthz"
    replay_only: bool = False
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Ports:
    """Every port of a running system; tests move them all to free ones."""

    replay: int = 8090
    binance: int = 9101
    defillama: int = 9102
    fred: int = 9103
    store_timescale: int = 9104
    store_clickhouse: int = 9105
    ray_calc: int = 3031
    syi_calc: int = 3032
    gateway: int = 8002
    api: int = 8000

    @classmethod
    def from_env(cls) -> Ports:
        """Defaults, each movable with SYI_STACK_PORT_<NAME> (e.g. SYI_STACK_PORT_API=18000)."""
        return cls(**{
            name: int(os.environ[f"SYI_STACK_PORT_{name.upper()}"])
            for name in cls.__dataclass_fields__
            if f"SYI_STACK_PORT_{name.upper()}" in os.environ
        })


def service_specs(ports: Ports, live: bool) -> list[ServiceSpec]:
    """Start order: sources first, then calculators, then storage and delivery."""
    replay = f"http://127.0.0.1:{ports.replay}"
    sources = (
        {}
        if live
        else {
            "SYI_BINANCE_REST_URL": replay,
            "SYI_BINANCE_WS_URL": f"ws://127.0.0.1:{ports.replay}",
            "SYI_DEFILLAMA_YIELDS_URL": replay,
            "SYI_DEFILLAMA_STABLECOINS_URL": replay,
            "SYI_FRED_URL": replay,
            "SYI_CRYPTOCOMPARE_URL": replay,
            "FRED_API_KEY": os.environ.get("FRED_API_KEY", "replay-key-not-secret"),
            # the replayed market refreshes faster than the real one, so a new user sees an index quickly
            "SYI_DEFILLAMA_POOLS_INTERVAL_S": "60",
            "SYI_DEFILLAMA_STABLECOINS_INTERVAL_S": "30",
            "SYI_FRED_POLL_INTERVAL_S": "60",
        }
    )
    return [
        ServiceSpec("replay-server", "replay_server", ports.replay, "SYI_REPLAY_PORT", replay_only=True),
        ServiceSpec("ingest-binance", "ingest_binance", ports.binance, "SYI_HEALTH_PORT", env=sources),
        ServiceSpec("ingest-defillama", "ingest_defillama", ports.defillama, "SYI_HEALTH_PORT", env=sources),
        ServiceSpec("ingest-fred", "ingest_fred", ports.fred, "SYI_HEALTH_PORT", env=sources),
        ServiceSpec("ray-calc", "ray_calc", ports.ray_calc, "SYI_METRICS_PORT"),
        ServiceSpec("syi-calc", "syi_calc", ports.syi_calc, "SYI_METRICS_PORT"),
        ServiceSpec("store-timescale", "store_timescale", ports.store_timescale, "SYI_HEALTH_PORT"),
        ServiceSpec("store-clickhouse", "store_clickhouse", ports.store_clickhouse, "SYI_HEALTH_PORT"),
        ServiceSpec("rest-api", "rest_api", ports.api, "SYI_API_PORT"),
        ServiceSpec("ws-gateway", "ws_gateway", ports.gateway, "SYI_WS_PORT"),
    ]


class System:
    """The services of one local system, beside the stack's Kafka and PostgreSQL."""

    def __init__(self, state_dir: Path, stack_env: dict[str, str], ports: Ports | None = None, live: bool = False):
        self.state_dir = state_dir
        self.ports = ports or Ports.from_env()
        self.live = live
        self.stack_env = stack_env
        self.specs = [s for s in service_specs(self.ports, live) if not (live and s.replay_only)]

    def _env(self, spec: ServiceSpec) -> dict[str, str]:
        return {
            **self.stack_env,
            "SYI_METHODOLOGY": os.environ.get("SYI_METHODOLOGY", str(DEFAULT_METHODOLOGY)),
            "SYI_CLICKHOUSE_DSN": os.environ.get("SYI_CLICKHOUSE_DSN", f"chdb://{self.state_dir / 'chdb'}"),
            "SYI_WS_PUBLIC_URL": f"ws://127.0.0.1:{self.ports.gateway}/stream/syi/live",
            "SYI_LOG_FORMAT": "json",
            spec.port_env: str(spec.port),
            **spec.env,
        }

    def health_url(self, spec: ServiceSpec) -> str:
        return f"http://127.0.0.1:{spec.port}{spec.health_path}"

    def health(self, spec: ServiceSpec) -> Health:
        return read_health(self.health_url(spec))

    def process(self, spec: ServiceSpec) -> ManagedProcess:
        # Started means alive (ok or degraded): a service waiting for a silent feed is up, and
        # `up`/`restart` say which of the two it is rather than wait for `ok`.
        return ManagedProcess(
            name=spec.name,
            command=[sys.executable, "-m", spec.module],
            state_dir=self.state_dir,
            env=self._env(spec),
            cwd=REPO_ROOT,
            ready=lambda: self.health(spec).alive,
        )

    def started(self, spec: ServiceSpec, settle: float = 0.0) -> str:
        """How `up` and `restart` report a service that answers: healthy, or degraded and why.

        `settle` seconds are given to a service that answers but is still starting (e.g. its
        topic follower has not caught up yet) before it is reported as degraded."""
        health = self.health(spec)
        deadline = time.monotonic() + settle
        while not health.ok and time.monotonic() < deadline:
            time.sleep(0.5)
            health = self.health(spec)
        if health.ok:
            return "healthy"
        return f"{health.status}" + (f" ({'; '.join(health.reasons)})" if health.reasons else "")

    def spec(self, name: str) -> ServiceSpec:
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise SystemExit(f"unknown service {name!r}; known: {', '.join(s.name for s in self.specs)}")

    def up(self, say: Say, ready_timeout: float = 90.0) -> None:
        for spec in self.specs:
            process = self.process(spec)
            pid, started = process.start()
            say(f"{spec.name}: {'started' if started else 'already running'} (pid {pid}, log {process.log_file})")
        for spec in self.specs:
            process = self.process(spec)
            process.wait_ready(timeout=ready_timeout)
            say(f"{spec.name}: {self.started(spec)}")

    def restart(self, name: str, say: Say) -> None:
        process = self.process(self.spec(name))
        if process.stop():
            say(f"{name}: stopped")
        pid, _ = process.start()
        say(f"{name}: started (pid {pid}), waiting until it answers on /healthz ...")
        process.wait_ready(timeout=90)
        say(f"{name}: {self.started(self.spec(name), settle=30.0)}")

    def urls(self) -> dict[str, str]:
        p = self.ports
        return {
            "dashboard": f"http://127.0.0.1:{p.api}/",
            "REST": f"http://127.0.0.1:{p.api}/api/index/current  (OpenAPI: http://127.0.0.1:{p.api}/docs)",
            "WebSocket": f"ws://127.0.0.1:{p.gateway}/stream/syi/live",
            "metrics": ", ".join(f"{s.name} http://127.0.0.1:{s.port}/metrics" for s in self.specs
                                 if s.name not in {"replay-server"}),
        }


def wait_for_first_index(settings: ServiceSettings, say: Say, timeout: float = 600.0) -> dict | None:
    """Poll `syi.calculated` until it holds a value published after this call; returns it."""
    import orjson

    from syi_shared.kafka import read_to_end
    from syi_shared.timefmt import format_utc
    from syi_shared.topics import SYI_CALCULATED

    since = format_utc(datetime.now(UTC) - timedelta(seconds=5))  # values from earlier runs do not count
    started = time.monotonic()
    last_note = 0.0
    while time.monotonic() - started < timeout:
        messages = read_to_end([SYI_CALCULATED], settings, timeout=10)
        fresh = [v for v in (orjson.loads(m.value()) for m in messages) if v.get("published_at", "") >= since]
        if fresh:
            return fresh[-1]
        waited = time.monotonic() - started
        if waited - last_note >= 15:
            say(f"waiting for the first index value ({waited:.0f} s; the first minute bucket must close) ...")
            last_note = waited
        time.sleep(2)
    return None
