"""Pure parts: the envelope, answers to client messages, settings checks."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from syi_shared.timefmt import parse_utc
from ws_gateway.envelope import frame
from ws_gateway.gateway import reply
from ws_gateway.settings import Settings


def test_envelope_splices_the_published_bytes_unchanged():
    published = b'{"b": 1, "a": [1.50, null]}'  # key order and number spelling must survive
    framed = frame("syi", published)
    assert framed.endswith(b',"data":' + published + b"}")
    parsed = orjson.loads(framed)
    assert list(parsed) == ["type", "timestamp", "data"] and parsed["type"] == "syi"
    parse_utc(parsed["timestamp"])


@pytest.mark.parametrize(
    ("incoming", "kind"),
    [
        ('{"type":"ping"}', "pong"),
        ('{"type":"ping","data":"abc"}', "pong"),
        ("ping", "error"),
        ("[]", "error"),
        ('{"kind":"ping"}', "error"),
        ('{"type":"unsubscribe"}', "error"),
        (b'{"type":"ping"}', "error"),  # binary frames are refused
    ],
)
def test_client_messages_get_pong_or_error(incoming, kind):
    answered_kind, data = reply(incoming)
    answer = orjson.loads(data)
    assert answered_kind == kind and answer["type"] == kind
    if kind == "error":
        assert answer["data"]["message"]


def test_pong_echoes_the_ping_data():
    _, data = reply('{"type":"ping","data":{"id":3}}')
    assert orjson.loads(data)["data"] == {"id": 3}


def test_defaults_are_loopback_port_8002_without_keys(monkeypatch):
    for name in ("SYI_WS_HOST", "SYI_WS_PORT", "SYI_WS_API_KEYS", "SYI_WS_ALLOWED_ORIGINS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    assert (settings.ws_host, settings.ws_port, settings.api_keys) == ("127.0.0.1", 8002, ())
    assert settings.ssl_context() is None


def test_keys_and_origins_are_comma_separated(monkeypatch):
    monkeypatch.setenv("SYI_WS_API_KEYS", " one, two ,")
    monkeypatch.setenv("SYI_WS_ALLOWED_ORIGINS", "https://a.example,https://b.example")
    settings = Settings(_env_file=None)
    assert settings.api_keys == ("one", "two")
    assert settings.allowed_origins == ("https://a.example", "https://b.example")


def test_tls_needs_both_certificate_and_key(tmp_path: Path):
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ValidationError, match="SYI_WS_TLS_CERT and SYI_WS_TLS_KEY"):
        Settings(_env_file=None, ws_tls_cert=cert)
    with pytest.raises(ValidationError, match="SYI_WS_TLS_KEY: no such file"):
        Settings(_env_file=None, ws_tls_cert=cert, ws_tls_key=tmp_path / "missing.pem")
