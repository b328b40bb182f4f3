"""The service as a process: a real uvicorn socket, metrics, OpenAPI and a clean SIGTERM."""

from __future__ import annotations

import httpx
import pytest

from tests.rest_api.conftest import api_process
from tests.store_timescale import records as r

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


async def test_the_process_serves_the_api_over_a_socket_and_stops_on_sigterm(api_dsn, writer):
    index_id = r.unique_symbol("S")
    value = r.index_value("2026-11-27T10:01:00.000Z", 0.0447448, index_id=index_id)
    await writer.write([("syi.calculated", value)])
    with api_process(api_dsn, SYI_INDEX_ID=index_id, SYI_API_KEYS="socket-key") as (base, process):
        async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": "socket-key"}) as client:
            current = (await client.get("/api/index/current")).json()
            refused = await client.get("/api/index/current", headers={"X-API-Key": "nope"})
            metrics = (await client.get("/metrics")).text
            spec = (await client.get("/openapi.json")).json()
            page = await client.get("/")
            script = await client.get("/static/app.js")
        process.terminate()
        output = process.communicate(timeout=20)[0].decode()
    assert current["cid"] == value.cid and current["syi_decimal"] == 0.0447448
    assert refused.status_code == 401
    assert 'syi_api_requests_total{route="/api/index/current",status="200"} 1.0' in metrics
    assert 'syi_api_requests_total{route="/api/index/current",status="401"} 1.0' in metrics
    assert 'syi_api_request_latency_seconds_count{route="/api/index/current"}' in metrics
    assert {"/api/index/live", "/v1/index/syi/history", "/v1/ray/{symbol}/current", "/v1/risk-premium/history"} <= set(
        spec["paths"])
    assert {"APIKeyHeader", "HTTPBearer"} <= set(spec["components"]["securitySchemes"])
    assert page.status_code == 200 and "history-chart" in page.text
    assert script.status_code == 200 and "WebSocket" in script.text
    # uvicorn shuts down gracefully (lifespan end logs "stopped"), then re-raises the SIGTERM it caught
    assert process.returncode in (0, -15), output
    assert '"event": "stopped"' in output
