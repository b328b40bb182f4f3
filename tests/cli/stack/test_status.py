"""`syi stack status` shows what each service says on /healthz: ok, degraded or failed, and why.

Real HTTP servers stand in for the services (a degraded one answers 200, a failed one 503, an
older one has no `reasons`), and the real `syi` command reads them through the stack's ports.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from syi_cli.stack.service_health import Health, health_of, read_health
from tests.conftest import free_port, free_port_pair

SYI = [sys.executable, "-m", "syi_cli.main"]
DEGRADED = {"status": "degraded", "reasons": ["kafka: no broker reachable for 17 s", "input cc.prices/2 stale: 75 s"],
            "last_closed_bucket": "2026-11-20T06:30:00.000Z"}
FAILED = {"status": "failed", "reasons": ["dataflow stopped: checkpoint unreadable"]}


def health_server(code: int, body: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path != "/healthz":
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def servers() -> Iterator[dict[str, ThreadingHTTPServer]]:
    started = {
        "ray-calc": health_server(200, orjson.dumps(DEGRADED)),
        "syi-calc": health_server(200, orjson.dumps({"status": "ok", "last_closed_bucket": None})),  # no reasons
        "ws-gateway": health_server(503, orjson.dumps(FAILED)),
        "store-timescale": health_server(503, orjson.dumps({"status": "starting", "reason": "migrations running"})),
    }
    yield started
    for server in started.values():
        server.shutdown()
        server.server_close()


def test_health_is_read_from_the_body_not_the_http_code(servers: dict[str, ThreadingHTTPServer]) -> None:
    def url(name: str) -> str:
        return f"http://127.0.0.1:{servers[name].server_port}/healthz"

    assert read_health(url("ray-calc")) == Health("degraded", tuple(DEGRADED["reasons"]))
    assert read_health(url("ray-calc")).alive and not read_health(url("ray-calc")).ok
    assert read_health(url("syi-calc")) == Health("ok")
    assert read_health(url("ws-gateway")) == Health("failed", tuple(FAILED["reasons"]))
    assert not read_health(url("ws-gateway")).alive
    assert read_health(url("store-timescale")) == Health("starting", ("migrations running",))
    silent = read_health(f"http://127.0.0.1:{free_port()}/healthz")
    assert silent.status == "unreachable" and "no answer" in silent.reasons[0]


def test_bodies_of_any_age_are_understood() -> None:
    assert health_of(200, b"not json") == Health("ok")
    assert health_of(503, b"") == Health("failed", ("HTTP 503 without a health report",))
    assert health_of(200, b'{"status": "degraded", "reasons": "one reason"}') == Health("degraded", ("one reason",))
    structured = health_of(200, b'{"status": "degraded", "reasons": [{"code": "stale", "input": "dl.apy"}]}')
    assert structured.reasons == ("code: stale, input: dl.apy",)


def test_stack_status_shows_each_services_health_and_reasons(
    servers: dict[str, ThreadingHTTPServer], tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    for name in [*servers, "rest-api"]:  # this test process stands in as their running pid
        (pids / f"{name}.pid").write_text(f"{os.getpid()}\n")
    (pids / "ingest-fred.pid").write_text("999999999\n")  # a pid file without its process: dead
    kafka_port = free_port_pair()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SYI_")},
        "SYI_STATE_DIR": str(tmp_path), "SYI_KAFKA_PORT": str(kafka_port), "SYI_PG_PORT": str(free_port()),
        "SYI_STACK_PORT_RAY_CALC": str(servers["ray-calc"].server_port),
        "SYI_STACK_PORT_SYI_CALC": str(servers["syi-calc"].server_port),
        "SYI_STACK_PORT_GATEWAY": str(servers["ws-gateway"].server_port),
        "SYI_STACK_PORT_STORE_TIMESCALE": str(servers["store-timescale"].server_port),
        "SYI_STACK_PORT_API": str(free_port()),  # nothing answers there
        "COLUMNS": "200",
    }
    done = subprocess.run([*SYI, "stack", "status"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr  # not everything is healthy
    assert f"syi kafka: 127.0.0.1:{kafka_port} (SYI_KAFKA_PORT)" in done.stderr

    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if line.count("│") > 3}
    state = {name: row.split("│")[3].strip() for name, row in rows.items()}
    assert state["ray-calc"] == "degraded"
    assert state["syi-calc"] == "healthy"
    assert state["ws-gateway"] == "failed"
    assert state["store-timescale"] == "starting"
    assert state["rest-api"] == "unhealthy"
    assert state["ingest-fred"] == "dead"
    assert state["kafka"] == "stopped" and state["postgres"] == "stopped"
    assert "replay-server" not in state  # never started: not listed

    below = done.stdout[done.stdout.index("ray-calc degraded:"):]
    for reason in DEGRADED["reasons"]:
        assert f"  - {reason}\n" in below
    assert f"ws-gateway failed:\n  - {FAILED['reasons'][0]}\n" in done.stdout
    assert "store-timescale starting:\n  - migrations running\n" in done.stdout
    assert "rest-api unhealthy:\n  - no answer from http://127.0.0.1:" in done.stdout
    assert "syi-calc" not in done.stdout[done.stdout.index("ray-calc degraded:"):]  # ok: nothing to explain
