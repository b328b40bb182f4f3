"""Fault injection, driven over HTTP (`POST /_control`) so tests break the real server.

HTTP faults are rules matched by path prefix, consumed `times` times (null: until reset):
  {"fail": 429, "retry_after": 2, "times": 1, "path": "/api/v3/depth"}
  {"status": 500, "path": "/pools", "times": 2}
  {"malformed": true, "path": "/stablecoins"}         # 200 with a truncated JSON body
  {"status": 200, "body": {...}, "path": "/data/"}     # any body, e.g. CryptoCompare's error envelope
WebSocket faults act on the open connections:
  {"drop_ws": true}  {"server_shutdown": true}  {"refuse_ws_s": 5}  {"malformed_ws": 2}  {"crossed_ws": 2}
Clock: {"seek_s": 6900}  {"speed": 0}. Everything at once: {"reset": true} (also DELETE /_control).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class HttpFault:
    status: int = 200
    path: str = ""
    times: int | None = 1
    retry_after: float | None = None
    body: Any = None
    malformed: bool = False

    def matches(self, path: str) -> bool:
        return path.startswith(self.path) and (self.times is None or self.times > 0)


@dataclass
class FaultState:
    http: list[HttpFault] = field(default_factory=list)
    refuse_ws_until: float = 0.0  # time.monotonic()
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=5000))

    def take(self, path: str) -> HttpFault | None:
        """The first matching rule, consuming one of its uses."""
        for fault in self.http:
            if fault.matches(path):
                if fault.times is not None:
                    fault.times -= 1
                return fault
        return None

    def record(self, path: str, status: int) -> None:
        # wall-clock time so a test can compare it with its own clock; never the query (FRED keys)
        self.requests.append({"at": time.time(), "path": path, "status": status})

    def refusing_ws(self) -> bool:
        return time.monotonic() < self.refuse_ws_until

    def reset(self) -> None:
        self.http.clear()
        self.refuse_ws_until = 0.0
        self.requests.clear()

    def add_http(self, command: dict[str, Any]) -> HttpFault:
        status = command.get("fail", command.get("status", 200))
        fault = HttpFault(
            status=int(status),
            path=str(command.get("path", "")),
            times=command.get("times", 1),
            retry_after=command.get("retry_after"),
            body=command.get("body"),
            malformed=bool(command.get("malformed", False)),
        )
        self.http.append(fault)
        return fault

    def describe(self) -> list[dict[str, Any]]:
        return [asdict(f) for f in self.http if f.times is None or f.times > 0]
