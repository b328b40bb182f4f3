"""GET from a source over HTTP with failures classified for logs and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from syi_shared.backoff import retry_after_seconds
from syi_shared.source_health import http_error_kind

USER_AGENT = "stableyield-index/0.1 (+ingest-defillama)"  # Cloudflare turns bare clients away


class SourceError(Exception):
    """A failed poll; `kind` labels the error metric, `retry_after` comes from a 429."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind, self.retry_after = kind, retry_after


def check_status(response: httpx.Response, what: str) -> None:
    status = response.status_code
    if status < 400:
        return
    retry_after = retry_after_seconds(response.headers.get("Retry-After")) if status == 429 else None
    raise SourceError(http_error_kind(status), f"{what}: HTTP {status}", retry_after)


@asynccontextmanager
async def get_stream(http: httpx.AsyncClient, url: str, what: str, **kwargs: object) -> AsyncIterator[httpx.Response]:
    """An open response with a good status whose body has not been read yet."""
    try:
        async with http.stream("GET", url, **kwargs) as response:  # type: ignore[arg-type]
            check_status(response, what)
            yield response
    except httpx.TimeoutException as exc:
        raise SourceError("timeout", f"{what}: {type(exc).__name__}") from None
    except httpx.TransportError as exc:  # includes a body cut off mid-read
        raise SourceError("transport", f"{what}: {type(exc).__name__}: {exc}") from None


async def get_body(http: httpx.AsyncClient, url: str, what: str, **kwargs: object) -> bytes:
    async with get_stream(http, url, what, **kwargs) as response:
        return await response.aread()
