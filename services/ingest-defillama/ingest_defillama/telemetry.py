"""ingest-defillama metrics (names from syi_shared.metric_names) and what /healthz reports."""

from __future__ import annotations

import time
from typing import Any

from syi_shared import metric_names
from syi_shared.metrics import counter, gauge

SERVICE = "ingest-defillama"
POOLS = "defillama_pools"
STABLECOINS = "defillama_stablecoins"
CRYPTOCOMPARE = "cryptocompare"

SOURCE_ERRORS = counter(metric_names.SOURCE_ERRORS, "Failed source calls and rejected source data, by kind",
                        labels=("service", "source", "kind"))
SOURCE_LAST_SUCCESS = gauge(metric_names.SOURCE_LAST_SUCCESS, "Unix time of the last good data from a source",
                            labels=("service", "source"))


class Health:
    """Per polled source: last success, and how old it may get (about two poll intervals)."""

    def __init__(self) -> None:
        self.stale_after_s: dict[str, float] = {}
        self.last_success: dict[str, float] = {}
        self.disabled: dict[str, str] = {}

    def watch(self, source: str, interval_s: float) -> None:
        self.stale_after_s[source] = 2 * interval_s + 60

    def success(self, source: str) -> None:
        now = time.time()
        self.last_success[source] = now
        SOURCE_LAST_SUCCESS.labels(SERVICE, source).set(now)

    def error(self, source: str, kind: str) -> None:
        SOURCE_ERRORS.labels(SERVICE, source, kind).inc()

    def report(self) -> dict[str, Any]:
        now = time.time()
        sources = {}
        for source, limit in self.stale_after_s.items():
            at = self.last_success.get(source)
            state = "starting" if at is None else ("ok" if now - at < limit else "stale")
            sources[source] = {"state": state, "last_success_age_s": None if at is None else round(now - at, 3)}
        states = {s["state"] for s in sources.values()}
        status = "ok" if states == {"ok"} else ("starting" if states <= {"starting", "ok"} else "degraded")
        return {"status": status, "sources": sources, "disabled": self.disabled}
