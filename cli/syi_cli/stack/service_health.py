"""What a service says about itself on `/healthz`: `ok`, `degraded` or `failed`, and why.

`/healthz` answers 200 for ok and degraded (503 only for failed), so the HTTP code alone
cannot tell ok from degraded: the JSON body's `status` and `reasons` do. Bodies of older
services (no `reasons`, a single `reason`, a status of their own such as `starting`) are read
as they are; a body that is not JSON falls back to the HTTP code.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import orjson

UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class Health:
    status: str  # "ok", "degraded", "failed", another word the service uses, or UNREACHABLE
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def alive(self) -> bool:
        """Up and serving (liveness): ok or degraded; failed or silent is not."""
        return self.status in ("ok", "degraded")


def read_health(url: str, timeout: float = 1.0) -> Health:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback only)
            return health_of(response.status, response.read())
    except urllib.error.HTTPError as error:  # 503 and friends still carry the report
        try:
            body = error.read()
        except (OSError, AttributeError):
            body = b""
        error.close()
        return health_of(error.code, body)
    except (OSError, ValueError) as exc:  # refused, timed out, reset
        return Health(UNREACHABLE, (f"no answer from {url} ({getattr(exc, 'reason', exc)})",))


def health_of(code: int, body: bytes) -> Health:
    try:
        report = orjson.loads(body)
    except orjson.JSONDecodeError:
        report = None
    if not isinstance(report, dict) or not isinstance(report.get("status"), str):
        return Health("ok") if code == 200 else Health("failed", (f"HTTP {code} without a health report",))
    reasons = report.get("reasons")
    if reasons is None and report.get("reason") is not None:
        reasons = [report["reason"]]
    if isinstance(reasons, (str, dict)):
        reasons = [reasons]
    return Health(report["status"], tuple(_text(r) for r in reasons or ()))


def _text(reason: Any) -> str:
    """Reasons are strings; a structured one is shown as its fields."""
    if isinstance(reason, dict):
        return ", ".join(f"{key}: {value}" for key, value in reason.items())
    return str(reason)
