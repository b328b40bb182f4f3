"""The FastAPI application: routes, auth, error bodies, health, metrics and the live page."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from syi_shared.health import HealthReport, liveness_code, readiness_code
from syi_shared.logs import get_logger
from syi_shared.models import validation_reason

from rest_api import page, routes_prototype, routes_v1
from rest_api.auth import Authenticator
from rest_api.queries import Store
from rest_api.schemas import ErrorBody, Health, ValidationErrorBody
from rest_api.settings import Settings
from rest_api.telemetry import SERVICE, RequestMetrics, db_errors

DESCRIPTION = """
The StableYield Index (SYI) and its inputs, read from the project's PostgreSQL store.

* Values come in decimal (`syi_decimal` 0.0447) and percent (`syi_percent` 4.47).
* Times are ISO-8601 UTC (`2026-11-27T10:01:00.000Z`); query times without an offset are UTC.
* History: `start` (inclusive), `end` (exclusive), `interval` (1m, 5m, 1h, 1d averages), `limit`,
  and `cursor` (from `next_cursor`) or `offset` pagination.
* Authentication, when the server is configured with keys: `X-API-Key: <key>` or
  `Authorization: Bearer <JWT, HS256>`. Each client has a rate limit (429 with `Retry-After`).
* Invalid parameters answer 422 with `error`, a one-line `message` and the `detail` list.
"""

TAGS = [
    {"name": "index", "description": "The published index: newest value, history, constituents, statistics"},
    {"name": "ray", "description": "Risk-adjusted yield per stablecoin"},
    {"name": "risk premium", "description": "SYI minus the 3-month T-bill APY"},
    {"name": "prototype paths", "description": "The prototype's `/api/index/*` paths, same data"},
    {"name": "operations", "description": "Health and Prometheus metrics"},
]

DB_DOWN = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
HEALTH_CACHE_SECONDS = 5.0


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = jsonable_encoder(exc.errors())
    body = {"error": "validation_error", "message": validation_reason(exc), "detail": errors}
    return JSONResponse(body, status_code=422)


def _database_error(request: Request, exc: Exception) -> JSONResponse:
    kind = type(exc).__name__
    db_errors.labels(SERVICE, kind).inc()
    get_logger().error("database_error", kind=kind, error=str(exc), path=request.url.path)
    return JSONResponse({"detail": f"the store is unavailable ({kind})"}, status_code=503)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # min_size=0: the API starts (and /healthz says why it is degraded) while PostgreSQL is down
        pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=0, max_size=settings.db_pool_size,
                                         command_timeout=30)
        app.state.store = Store(pool, settings.current_cache_seconds)
        try:
            yield
        finally:
            await pool.close()
            get_logger().info("stopped")

    app = FastAPI(
        title="StableYield Index API",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        responses={422: {"model": ValidationErrorBody, "description": "Invalid parameters"}},
    )
    app.state.settings = settings
    app.state.health = {"checked": 0.0, "database": "unknown"}

    guard = Authenticator(settings)
    protected = {
        "dependencies": [Depends(guard)],
        "responses": {
            401: {"model": ErrorBody, "description": "Missing or invalid credentials (when keys are configured)"},
            429: {"model": ErrorBody, "description": "Rate limit exceeded; see Retry-After"},
            503: {"model": ErrorBody, "description": "The store is unavailable"},
        },
    }
    app.include_router(routes_v1.router, **protected)
    app.include_router(routes_prototype.router, **protected)
    app.include_router(page.router)
    app.mount("/static", page.static_files(), name="static")
    app.add_exception_handler(RequestValidationError, _validation_error)
    for error in DB_DOWN:
        app.add_exception_handler(error, _database_error)
    app.add_middleware(RequestMetrics)

    async def health(request: Request) -> HealthReport:
        state = request.app.state.health
        # at most one database round trip every few seconds: probes and load tests stay cheap
        if time.monotonic() - state["checked"] > HEALTH_CACHE_SECONDS:
            try:
                await request.app.state.store.ping()
                state["database"] = "ok"
            except DB_DOWN as exc:
                state["database"] = f"error: {type(exc).__name__}"
            state["checked"] = time.monotonic()
        if state["database"] == "ok":
            return HealthReport(database="ok")
        # degraded, not failed: a restart does not bring the database back (docs/operations.md)
        return HealthReport.degraded(f"database: {state['database']}", database=state["database"])

    @app.get("/healthz", response_model=Health, tags=["operations"],
             summary="Liveness: 200 while serving (ok or degraded), 503 only when a restart would help")
    async def healthz(request: Request) -> Any:
        report = await health(request)
        return JSONResponse(report.body(), status_code=liveness_code(report.status))

    @app.get("/readyz", response_model=Health, tags=["operations"],
             summary="Readiness: 200 only when the database answers", responses={503: {"model": Health}})
    async def readyz(request: Request) -> Any:
        report = await health(request)
        return JSONResponse(report.body(), status_code=readiness_code(report.status))

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
