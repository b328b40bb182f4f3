"""ingest-binance metrics (names from syi_shared.metric_names) and what /healthz reports."""

from __future__ import annotations

import time
from typing import Any

from syi_shared import metric_names
from syi_shared.metrics import counter, gauge

SERVICE = "ingest-binance"
WS = "binance_ws"
REST = "binance_rest"

SOURCE_ERRORS = counter(metric_names.SOURCE_ERRORS, "Failed source calls and rejected source data, by kind",
                        labels=("service", "source", "kind"))
SOURCE_RECONNECTS = counter(metric_names.SOURCE_RECONNECTS, "Source connections re-opened",
                            labels=("service", "source"))
SOURCE_LAST_SUCCESS = gauge(metric_names.SOURCE_LAST_SUCCESS, "Unix time of the last good data from a source",
                            labels=("service", "source"))


class Health:
    """Last success per source and the current mode; read by the telemetry thread."""

    def __init__(self, stale_after_s: float) -> None:
        self.stale_after_s = stale_after_s
        self.last_success: dict[str, float] = {}
        self.mode = "starting"  # starting | stream | reconnecting | rest_fallback
        self.pairs: list[str] = []
        self.skipped_pairs: dict[str, str] = {}

    def success(self, source: str) -> None:
        now = time.time()
        self.last_success[source] = now
        SOURCE_LAST_SUCCESS.labels(SERVICE, source).set(now)

    def error(self, source: str, kind: str) -> None:
        SOURCE_ERRORS.labels(SERVICE, source, kind).inc()

    def reconnect(self, source: str) -> None:
        SOURCE_RECONNECTS.labels(SERVICE, source).inc()

    def report(self) -> dict[str, Any]:
        now = time.time()
        ages = {source: round(now - at, 3) for source, at in self.last_success.items()}
        fresh = any(age < self.stale_after_s for age in ages.values())
        status = "ok" if fresh else ("starting" if not ages else "stale")
        return {"status": status, "mode": self.mode, "pairs": self.pairs, "skipped_pairs": self.skipped_pairs,
                "last_success_age_s": ages}
