"""API keys, JWT and per-client rate limits, enforced whenever configured."""

from __future__ import annotations

import time

import jwt
import pytest

from rest_api.auth import RateLimiter
from rest_api.settings import Settings, parse_api_keys
from tests.rest_api.conftest import api_client
from tests.store_timescale import records as r

SECRET = "test-secret-of-at-least-32-bytes-length"


@pytest.fixture(scope="module")
async def stored(writer):
    index_id = r.unique_symbol("A")
    await writer.write([("syi.calculated", r.index_value("2026-11-27T10:01:00.000Z", 0.045, index_id=index_id))])
    return index_id


def token(sub: str = "dashboard", secret: str = SECRET, **claims: object) -> str:
    return jwt.encode({"sub": sub, **claims}, secret, algorithm="HS256")


@pytest.mark.integration
async def test_without_configuration_no_credentials_are_needed(api_dsn, stored):
    async with api_client(postgres_dsn=api_dsn, index_id=stored) as client:
        response = await client.get("/api/index/current")
        config = (await client.get("/config.json")).json()
    assert response.status_code == 200
    assert config["auth_required"] is False


@pytest.mark.integration
async def test_configured_keys_are_required_and_checked(api_dsn, stored):
    async with api_client(postgres_dsn=api_dsn, index_id=stored, api_keys="k-one,k-two") as client:
        missing = await client.get("/api/index/current")
        wrong = await client.get("/api/index/current", headers={"X-API-Key": "k-three"})
        right = await client.get("/v1/index/syi/current", headers={"X-API-Key": "k-two"})
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        page = await client.get("/")
        config = (await client.get("/config.json")).json()
    assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
    assert "Bearer" in missing.headers["WWW-Authenticate"]
    assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid API key"
    assert right.status_code == 200 and right.json()["index_id"] == stored
    assert health.status_code == ready.status_code == page.status_code == 200  # operations and the page stay open
    assert config["auth_required"] is True


@pytest.mark.integration
async def test_jwt_bearer_tokens_signed_with_the_secret_are_accepted(api_dsn, stored):
    async with api_client(postgres_dsn=api_dsn, index_id=stored, api_jwt_secret=SECRET) as client:
        good = await client.get("/api/index/live", headers={"Authorization": f"Bearer {token()}"})
        forged = await client.get("/api/index/live",
                                  headers={"Authorization": f"Bearer {token(secret='another-secret-of-32-bytes-or-more')}"})
        expired = await client.get("/api/index/live",
                                   headers={"Authorization": f"Bearer {token(exp=int(time.time()) - 10)}"})
        anonymous = await client.get("/api/index/live")
    assert good.status_code == 200
    assert forged.status_code == 401 and forged.json()["detail"].startswith("invalid token")
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    assert anonymous.status_code == 401


@pytest.mark.integration
async def test_each_key_has_its_own_rate_limit_and_429_says_when_to_retry(api_dsn, stored):
    async with api_client(postgres_dsn=api_dsn, index_id=stored, api_keys="slow:3,fast") as client:
        slow = [await client.get("/api/index/live", headers={"X-API-Key": "slow"}) for _ in range(4)]
        fast = [await client.get("/api/index/live", headers={"X-API-Key": "fast"}) for _ in range(4)]
    assert [x.status_code for x in slow] == [200, 200, 200, 429]
    assert slow[-1].headers["Retry-After"] == "20"  # 3 per minute: one token every 20 s
    assert "3 requests per minute" in slow[-1].json()["detail"]
    assert [x.status_code for x in fast] == [200] * 4


def test_token_bucket_refills_at_the_configured_rate():
    limiter = RateLimiter()
    assert [limiter.take("c", 60, now=100.0) for _ in range(60)] == [0.0] * 60
    assert limiter.take("c", 60, now=100.0) == pytest.approx(1.0)
    assert limiter.take("c", 60, now=100.5) == pytest.approx(0.5)
    assert limiter.take("c", 60, now=101.0) == 0.0  # one second later: one token back
    assert limiter.take("other", 60, now=101.0) == 0.0


def test_api_keys_setting_is_parsed_or_rejected_at_start():
    assert parse_api_keys("a, b:120 ,", 600) == {"a": 600, "b": 120}
    assert Settings(api_keys="x:5").key_limits() == {"x": 5}
    with pytest.raises(ValueError, match="SYI_API_KEYS"):
        Settings(api_keys="x:many")
