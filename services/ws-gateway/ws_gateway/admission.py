"""The opening handshake's gatekeeper (websockets `process_request`).

Serves the plain-HTTP endpoints (`/healthz`, `/readyz`, `/metrics`) and refuses stream connections with a
proper HTTP status, checked in this order: unknown path 404, Origin not allowed 403, API key
missing or wrong 401, server full 503, too many connections from one IP 429.
"""

from __future__ import annotations

import asyncio
import hmac
from collections import Counter
from collections.abc import Callable, Collection
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from syi_shared.logs import get_logger
from syi_shared.telemetry import PROBES
from ws_gateway import telemetry
from ws_gateway.settings import Settings


class Admission:
    def __init__(self, settings: Settings, paths: Collection[str], health: Callable[[], dict[str, Any]]) -> None:
        self.paths = paths
        self.health = health
        self.api_keys = [key.encode() for key in settings.api_keys]
        self.origins = set(settings.allowed_origins)
        self.max_connections = settings.ws_max_connections
        self.max_per_ip = settings.ws_max_connections_per_ip
        self.connections = 0  # accepted handshakes whose socket is still open
        self.per_ip: Counter[str] = Counter()
        self._releases: set[asyncio.Task[None]] = set()
        self.log = get_logger(component="admission")  # bound after configure_logging

    def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path in PROBES:  # liveness and readiness: same body, the status code differs
            report = self.health()
            status = HTTPStatus(PROBES[url.path](report.get("status")))
            return _respond(connection, status, orjson.dumps(report), "application/json")
        if url.path == "/metrics":
            return _respond(connection, HTTPStatus.OK, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        if url.path not in self.paths:
            return self._refuse(connection, HTTPStatus.NOT_FOUND, "not_found", f"streams: {', '.join(self.paths)}")
        origins = request.headers.get_all("Origin")
        # browsers always send Origin; other clients (wscat, services) do not and are judged by their key
        if self.origins and origins and (len(origins) > 1 or origins[0] not in self.origins):
            return self._refuse(connection, HTTPStatus.FORBIDDEN, "origin", "origin not allowed")
        if self.api_keys:
            key = _api_key(request, url.query)
            if key is None or not any(hmac.compare_digest(key, known) for known in self.api_keys):
                reason = "missing" if key is None else "invalid"
                telemetry.AUTH_FAILURES.labels(reason).inc()
                return self._refuse(connection, HTTPStatus.UNAUTHORIZED, "api_key", f"API key {reason}")
        if self.connections >= self.max_connections:
            return self._refuse(connection, HTTPStatus.SERVICE_UNAVAILABLE, "limit", "server full, retry later")
        ip = _ip(connection)
        if self.max_per_ip and self.per_ip[ip] >= self.max_per_ip:
            return self._refuse(
                connection, HTTPStatus.TOO_MANY_REQUESTS, "per_ip", "too many connections from your address"
            )
        self._reserve(connection, ip)
        return None

    def _reserve(self, connection: ServerConnection, ip: str) -> None:
        """Count the connection until its socket closes, whatever happens to the handshake."""
        self.connections += 1
        self.per_ip[ip] += 1
        task = asyncio.get_running_loop().create_task(self._release_when_closed(connection, ip))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release_when_closed(self, connection: ServerConnection, ip: str) -> None:
        try:
            await connection.wait_closed()
        finally:
            self.connections -= 1
            self.per_ip[ip] -= 1
            if self.per_ip[ip] <= 0:
                del self.per_ip[ip]

    def _refuse(self, connection: ServerConnection, status: HTTPStatus, reason: str, text: str) -> Response:
        telemetry.REJECTED.labels(reason).inc()
        self.log.info("connection_refused", reason=reason, status=int(status), peer=_ip(connection))  # never the key
        return connection.respond(status, text + "\n")


def _api_key(request: Request, query: str) -> bytes | None:
    value = request.headers.get_all("X-API-Key") or parse_qs(query).get("api_key")
    return value[0].encode("utf-8", "replace") if value else None


def _ip(connection: ServerConnection) -> str:
    address = connection.remote_address
    return str(address[0]) if address else "?"


def _respond(connection: ServerConnection, status: HTTPStatus, body: bytes, content_type: str) -> Response:
    response = connection.respond(status, "")
    del response.headers["Content-Type"]
    del response.headers["Content-Length"]
    response.headers["Content-Type"] = content_type
    response.headers["Content-Length"] = str(len(body))
    response.body = body
    return response
