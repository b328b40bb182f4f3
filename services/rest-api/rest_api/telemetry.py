"""rest-api's metrics (names from syi_shared.metric_names) and the middleware that counts requests."""

from __future__ import annotations

import time
from typing import Any

from syi_shared import metric_names
from syi_shared.metrics import counter, histogram

SERVICE = "rest-api"

requests_total = counter(metric_names.API_REQUESTS, "HTTP requests, by route and status", labels=("route", "status"))
latency = histogram(
    metric_names.API_LATENCY,
    "Seconds to answer a request, by route",
    labels=("route",),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
db_errors = counter(metric_names.DB_ERRORS, "Database errors, by kind", labels=("service", "kind"))


class RequestMetrics:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware): the route template, never the raw path,
    labels the series, so their number stays bounded."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            requests_total.labels(name, str(status)).inc()
            latency.labels(name).observe(time.perf_counter() - started)
