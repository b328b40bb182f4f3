"""What every ingester tracks about its sources: the source metrics and the /healthz bookkeeping.

`SourceHealth` counts errors and reconnects, stamps each source's last success (a gauge and a time
the telemetry thread reads) and says per source whether it is starting, ok or stale. Services
subclass it only to shape their own /healthz report.
"""

from __future__ import annotations

import time
from typing import Any

from syi_shared import metric_names
from syi_shared.metrics import counter, gauge

SOURCE_ERRORS = counter(metric_names.SOURCE_ERRORS, "Failed source calls and rejected source data, by kind",
                        labels=("service", "source", "kind"))
SOURCE_RECONNECTS = counter(metric_names.SOURCE_RECONNECTS, "Source connections re-opened",
                            labels=("service", "source"))
SOURCE_LAST_SUCCESS = gauge(metric_names.SOURCE_LAST_SUCCESS, "Unix time of the last good data from a source",
                            labels=("service", "source"))


class SourceHealth:
    """Per source: last success (unix time), how old it may get, and why it is switched off, if it is."""

    def __init__(self, service: str, stale_after_s: dict[str, float] | None = None) -> None:
        self.service = service
        self.stale_after_s: dict[str, float] = dict(stale_after_s or {})
        self.last_success: dict[str, float] = {}
        self.disabled: dict[str, str] = {}  # source -> reason it is not polled at all

    def success(self, source: str) -> None:
        now = time.time()
        self.last_success[source] = now
        SOURCE_LAST_SUCCESS.labels(self.service, source).set(now)

    def error(self, source: str, kind: str) -> None:
        SOURCE_ERRORS.labels(self.service, source, kind).inc()

    def reconnect(self, source: str) -> None:
        SOURCE_RECONNECTS.labels(self.service, source).inc()

    def ages(self, now: float | None = None) -> dict[str, float]:
        """Seconds since each source's last success (ms precision); sources never successful are absent."""
        now = time.time() if now is None else now
        return {source: round(now - at, 3) for source, at in self.last_success.items()}

    def state(self, source: str, now: float | None = None) -> str:
        """"starting" (no success yet), "ok" (younger than its limit) or "stale"."""
        at = self.last_success.get(source)
        if at is None:
            return "starting"
        now = time.time() if now is None else now
        return "ok" if now - at < self.stale_after_s[source] else "stale"

    def report(self) -> dict[str, Any]:
        """Every source with a limit: "ok" when all are ok, "starting" while some have not yet
        succeeded and none is stale, else "degraded"."""
        now = time.time()
        ages = self.ages(now)
        sources = {source: {"state": self.state(source, now), "last_success_age_s": ages.get(source)}
                   for source in self.stale_after_s}
        states = {s["state"] for s in sources.values()}
        status = "ok" if states == {"ok"} else ("starting" if states <= {"starting", "ok"} else "degraded")
        return {"status": status, "sources": sources, "disabled": self.disabled}


def http_error_kind(status: int) -> str:
    """The `kind` label of a source call that answered with an HTTP error status."""
    return "http_429" if status == 429 else ("http_5xx" if status >= 500 else "http_4xx")
