"""The health and metrics endpoint every service serves: `/healthz`, `/readyz` (JSON) and `/metrics`.

Both health paths answer the same body (syi_shared.health.HealthReport); only the HTTP status
differs, so an orchestrator restarts what a restart would help and no more (docs/operations.md):
`/healthz` (liveness) is 200 for `ok` and `degraded`, 503 for `failed`; `/readyz` (readiness)
is 200 only for `ok`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from syi_shared.health import HealthReport, as_body, liveness_code, readiness_code

HealthCheck = Callable[[], HealthReport | Mapping[str, Any]]

PROBES = {"/healthz": liveness_code, "/readyz": readiness_code}


def _handler(health: HealthCheck, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's spelling)
            path = self.path.split("?", 1)[0]
            if path in PROBES:
                try:
                    report = as_body(health())
                except Exception as exc:  # noqa: BLE001 - a health check that breaks says so, and says failed
                    report = HealthReport.failed(f"health check raised {type(exc).__name__}: {exc}").body()
                self._send(PROBES[path](report.get("status")), "application/json", orjson.dumps(report))
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
            pass

    return Handler


def serve_telemetry(
    host: str, port: int, health: HealthCheck, registry: CollectorRegistry = REGISTRY
) -> ThreadingHTTPServer:
    """Start `/healthz`, `/readyz` and `/metrics` on a daemon thread; returns the server (`.server_port`)."""
    server = ThreadingHTTPServer((host, port), _handler(health, registry))
    threading.Thread(target=server.serve_forever, name="telemetry", daemon=True).start()
    return server
