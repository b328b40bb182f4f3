"""FRED `series/observations` (JSON), newest first.

The API key travels in the query string, so it is never allowed near a log line: httpx's
own request logging is silenced and every error text is scrubbed of the key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx
import orjson
from pydantic import SecretStr

from syi_shared.backoff import retry_after_seconds
from syi_shared.source_health import http_error_kind

USER_AGENT = "stableyield-index/0.1 (+ingest-fred)"

# httpx logs each request URL (with api_key=...) at INFO: keep it quiet whatever the root level is
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)


class FredError(Exception):
    def __init__(self, kind: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind, self.retry_after = kind, retry_after


@dataclass(frozen=True)
class Observation:
    date: str  # YYYY-MM-DD
    value: float | None  # None where FRED writes "." (holidays, not yet published)


class FredClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str, api_key: SecretStr) -> None:
        self.http = http
        self.url = f"{base_url.rstrip('/')}/fred/series/observations"
        self._key = api_key.get_secret_value()

    def redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    async def latest(self, series: str, limit: int) -> list[Observation]:
        params = {"series_id": series, "api_key": self._key, "file_type": "json", "sort_order": "desc",
                  "limit": str(limit)}
        try:
            response = await self.http.get(self.url, params=params)
        except httpx.TimeoutException as exc:
            raise FredError("timeout", f"observations: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise FredError("transport", self.redact(f"observations: {type(exc).__name__}: {exc}")) from None
        if response.status_code >= 400:
            raise self._http_error(response)
        try:
            rows = orjson.loads(response.content)["observations"]
            return [Observation(row["date"], None if row["value"] == "." else float(row["value"])) for row in rows]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise FredError("malformed", f"observations: unexpected body ({type(exc).__name__})") from None

    def _http_error(self, response: httpx.Response) -> FredError:
        status = response.status_code
        try:
            message = str(orjson.loads(response.content).get("error_message", ""))
        except (orjson.JSONDecodeError, AttributeError):
            message = ""
        retry_after = retry_after_seconds(response.headers.get("Retry-After")) if status == 429 else None
        return FredError(http_error_kind(status), self.redact(f"observations: HTTP {status} {message[:200]}".strip()),
                         retry_after)
