"""Security and HTTP endpoints of a real gateway: statuses a real client sees on the wire."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
from prometheus_client import REGISTRY
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidMessage, InvalidStatus

from tests.ws_gateway.clients import receive, running_gateway, url, wait_for

pytestmark = pytest.mark.integration


async def refused_status(address: str, **kwargs) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(address, **kwargs):
            pass
    return refused.value.response.status_code


async def welcomed(address: str, **kwargs) -> bool:
    async with connect(address, **kwargs) as ws:
        message, _ = await receive(ws)
        return message["type"] == "welcome"


def http_get(address: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(address, timeout=10) as response:  # noqa: S310 (loopback)
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_api_key_enforced_by_header_or_query_when_configured(provisioned):
    failures_before = metric("syi_ws_auth_failures_total", reason="missing") + metric(
        "syi_ws_auth_failures_total", reason="invalid"
    )
    async with running_gateway(provisioned, ws_api_keys="key-one, key-two") as gateway:
        assert await refused_status(url(gateway)) == 401
        assert await refused_status(url(gateway), additional_headers={"X-API-Key": "wrong"}) == 401
        assert await refused_status(url(gateway) + "?api_key=wrong") == 401
        assert await welcomed(url(gateway), additional_headers={"X-API-Key": "key-one"})
        assert await welcomed(url(gateway) + "?api_key=key-two")
    failures_after = metric("syi_ws_auth_failures_total", reason="missing") + metric(
        "syi_ws_auth_failures_total", reason="invalid"
    )
    assert failures_after - failures_before == 3


async def test_origin_outside_allow_list_is_refused(provisioned):
    async with running_gateway(provisioned, ws_allowed_origins="https://app.example") as gateway:
        assert await refused_status(url(gateway), origin="https://evil.example") == 403
        assert await welcomed(url(gateway), origin="https://app.example")
        assert await welcomed(url(gateway)), "non-browser clients send no Origin"


async def test_per_ip_limit_refuses_with_429_and_frees_the_slot_on_close(provisioned):
    async with running_gateway(provisioned, ws_max_connections_per_ip=2) as gateway:
        first = await connect(url(gateway))
        second = await connect(url(gateway))
        assert await refused_status(url(gateway)) == 429
        await first.close()
        await wait_for(lambda: gateway.admission.connections == 1, what="the slot to be freed")
        assert await welcomed(url(gateway))
        await second.close()


async def test_full_server_refuses_with_503(provisioned):
    async with running_gateway(provisioned, ws_max_connections=1) as gateway, connect(url(gateway)):
        assert await refused_status(url(gateway)) == 503


async def test_oversized_client_message_closes_with_1009(provisioned):
    async with running_gateway(provisioned, ws_max_message_bytes=1024) as gateway, connect(url(gateway)) as ws:
        await receive(ws)
        await ws.send("x" * 5000)
        with pytest.raises(ConnectionClosedError) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_healthz_metrics_and_unknown_path_over_plain_http(provisioned):
    async with running_gateway(provisioned) as gateway, connect(url(gateway)):
        base = f"http://127.0.0.1:{gateway.port}"
        status, kind, body = await asyncio.to_thread(http_get, base + "/healthz")
        assert status == 200 and kind == "application/json"
        health = orjson.loads(body)
        assert health["status"] == "ok" and health["streams"]["syi"]["subscribers"] == 1
        status, kind, body = await asyncio.to_thread(http_get, base + "/metrics")
        assert status == 200 and kind.startswith("text/plain")
        text = body.decode()
        for name in ("syi_ws_subscribers", "syi_ws_messages_sent_total", "syi_ws_bytes_sent_total",
                     "syi_ws_slow_client_drops_total", "syi_ws_auth_failures_total", "syi_ws_fanout_latency_seconds"):
            assert name in text, name
        status, _, _ = await asyncio.to_thread(http_get, base + "/stream/nowhere")
        assert status == 404


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_tls_when_a_certificate_is_configured(provisioned, tmp_path: Path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
               "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    await asyncio.to_thread(subprocess.run, command, check=True, capture_output=True)
    client_context = ssl.create_default_context(cafile=str(cert))
    async with running_gateway(provisioned, ws_tls_cert=cert, ws_tls_key=key) as gateway:
        assert await welcomed(url(gateway, scheme="wss"), ssl=client_context)
        with pytest.raises((InvalidMessage, OSError)):  # plain ws:// gets no WebSocket from a TLS port
            await asyncio.wait_for(welcomed(url(gateway)), 10)
