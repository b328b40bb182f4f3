"""API keys, JWT bearer tokens and per-client rate limits.

Enforced only when configured (SYI_API_KEYS and/or SYI_API_JWT_SECRET): the embedded default
listens on 127.0.0.1 without either. Each client — an API key, or a token's `sub` — has its own
token bucket: it holds up to a minute's allowance and refills continuously.
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from dataclasses import dataclass

import jwt
from fastapi import HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from rest_api.settings import Settings

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key from SYI_API_KEYS")
bearer = HTTPBearer(auto_error=False, description="A JWT signed with HS256 (SYI_API_JWT_SECRET); `sub` names the client")

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="syi", ApiKey header="X-API-Key"'}


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """In-process token buckets, one per client (a key or a token subject)."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, client: str, per_minute: int, now: float | None = None) -> float:
        """Spend one token; returns 0 when allowed, else the seconds until a token is back."""
        now = time.monotonic() if now is None else now
        rate = per_minute / 60.0
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                bucket = self._buckets[client] = _Bucket(float(per_minute), now)
            bucket.tokens = min(float(per_minute), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate


class Authenticator:
    """The FastAPI dependency guarding the data routes."""

    def __init__(self, settings: Settings) -> None:
        self.keys = settings.key_limits()
        self.secret = settings.api_jwt_secret.get_secret_value() if settings.api_jwt_secret else None
        self.default_rate = settings.api_rate_limit_per_minute
        self.enabled = bool(self.keys) or self.secret is not None
        self.limiter = RateLimiter()

    def _key_rate(self, presented: str) -> int | None:
        for key, rate in self.keys.items():
            if hmac.compare_digest(key.encode(), presented.encode()):
                return rate
        return None

    def identify(self, api_key: str | None, token: str | None) -> tuple[str, int]:
        """(client id, requests per minute) or 401."""
        if api_key:
            rate = self._key_rate(api_key)
            if rate is None:
                raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid API key", headers=_CHALLENGE)
            # the client id must not be the key itself: it may end up in logs
            return f"key:{hmac.new(b'syi', api_key.encode(), 'sha256').hexdigest()[:16]}", rate
        if token and self.secret:
            try:
                claims = jwt.decode(token, self.secret, algorithms=["HS256"], options={"require": ["sub"]})
            except jwt.PyJWTError as exc:
                raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"invalid token: {exc}", headers=_CHALLENGE) from None
            return f"jwt:{claims['sub']}", self.default_rate
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "authentication required: send an X-API-Key header or Authorization: Bearer <JWT>",
            headers=_CHALLENGE,
        )

    async def __call__(
        self,
        request: Request,
        api_key: str | None = Security(api_key_header),
        credentials: HTTPAuthorizationCredentials | None = Security(bearer),
    ) -> str | None:
        if not self.enabled:
            return None
        client, rate = self.identify(api_key, credentials.credentials if credentials else None)
        wait = self.limiter.take(client, rate)
        if wait > 0:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"rate limit of {rate} requests per minute exceeded; retry in {math.ceil(wait)} s",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        request.state.client = client
        return client
