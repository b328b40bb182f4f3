"""Binance spot REST (market data only): exchangeInfo, ticker/bookTicker, depth.

Rate limits are per IP: a 429 or 418 (ban) carries `Retry-After` seconds, and every later
request of this client waits until then (`wait_turn`), the stream's reconnects included.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson

from syi_shared.backoff import retry_after_seconds
from syi_shared.source_health import http_error_kind

USER_AGENT = "stableyield-index/0.1 (+ingest-binance)"
INVALID_SYMBOL = -1121


class BinanceError(Exception):
    """A failed call; `kind` labels the error metric (http_429, http_5xx, transport, malformed...)."""

    def __init__(self, kind: str, message: str, *, code: int | None = None, fatal: bool = False) -> None:
        super().__init__(message)
        self.kind, self.code, self.fatal = kind, code, fatal


def retry_after_s(headers: httpx.Headers, default: float) -> float:
    seconds = retry_after_seconds(headers.get("Retry-After"))
    return default if seconds is None else max(0.0, seconds)


class BinanceRest:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.not_before = 0.0  # time.monotonic() before which no request may go out

    def back_off(self, seconds: float) -> None:
        self.not_before = max(self.not_before, time.monotonic() + seconds)

    async def wait_turn(self) -> None:
        delay = self.not_before - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        await self.wait_turn()
        try:
            response = await self.http.get(path, params=params)
        except httpx.TimeoutException as exc:
            raise BinanceError("timeout", f"{path}: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise BinanceError("transport", f"{path}: {type(exc).__name__}: {exc}") from None
        status = response.status_code
        if status in (418, 429):
            wait = retry_after_s(response.headers, 120.0 if status == 418 else 60.0)
            self.back_off(wait)
            raise BinanceError(f"http_{status}", f"{path}: HTTP {status}, retry after {wait:g} s")
        if status >= 400:
            code, msg = _error_body(response.content)
            kind = http_error_kind(status)  # not 429, handled above
            # 451: this IP is geo-blocked; retrying cannot help, the base URL must change
            raise BinanceError(kind, f"{path}: HTTP {status} {msg}".strip(), code=code, fatal=status == 451)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise BinanceError("malformed", f"{path}: body is not JSON ({exc})") from None

    async def exchange_info(self, pairs: list[str]) -> dict[str, dict[str, Any]]:
        """symbol -> exchangeInfo entry. One unknown symbol fails the whole call with -1121."""
        body = await self.get("/api/v3/exchangeInfo", {"symbols": _json_list(pairs)})
        try:
            return {entry["symbol"]: entry for entry in body["symbols"]}
        except (KeyError, TypeError) as exc:
            raise BinanceError("malformed", f"exchangeInfo without symbols ({exc!r})") from None

    async def book_tickers(self, pairs: list[str]) -> list[dict[str, Any]]:
        body = await self.get("/api/v3/ticker/bookTicker", {"symbols": _json_list(pairs)})
        if not isinstance(body, list):
            raise BinanceError("malformed", "bookTicker: expected a list")
        return body

    async def depth(self, pair: str, limit: int) -> dict[str, Any]:
        body = await self.get("/api/v3/depth", {"symbol": pair, "limit": str(limit)})
        if not isinstance(body, dict):
            raise BinanceError("malformed", "depth: expected an object")
        return body


def _json_list(pairs: list[str]) -> str:
    return orjson.dumps(pairs).decode()  # ["A","B"]: the compact form Binance requires


def _error_body(content: bytes) -> tuple[int | None, str]:
    try:
        body = orjson.loads(content)
        return body.get("code"), str(body.get("msg", ""))[:200]
    except (orjson.JSONDecodeError, AttributeError):
        return None, content[:100].decode(errors="replace")
