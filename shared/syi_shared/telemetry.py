"""The health and metrics endpoint every service serves: `/healthz` (JSON) and `/metrics`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

HealthCheck = Callable[[], dict[str, Any]]


def _handler(health: HealthCheck, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's spelling)
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                report = health()
                status = 200 if report.get("status") == "ok" else 503
                self._send(status, "application/json", orjson.dumps(report))
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
    """Start `/healthz` and `/metrics` on a daemon thread; returns the server (`.server_port`)."""
    server = ThreadingHTTPServer((host, port), _handler(health, registry))
    threading.Thread(target=server.serve_forever, name="telemetry", daemon=True).start()
    return server
