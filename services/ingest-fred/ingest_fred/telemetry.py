"""ingest-fred metrics (names from syi_shared.metric_names) and what /healthz reports."""

from __future__ import annotations

import time
from typing import Any

from syi_shared import metric_names
from syi_shared.metrics import counter, gauge

SERVICE = "ingest-fred"
FRED = "fred"

SOURCE_ERRORS = counter(metric_names.SOURCE_ERRORS, "Failed source calls and rejected source data, by kind",
                        labels=("service", "source", "kind"))
SOURCE_LAST_SUCCESS = gauge(metric_names.SOURCE_LAST_SUCCESS, "Unix time of the last good data from a source",
                            labels=("service", "source"))


class Health:
    def __init__(self, stale_after_s: float) -> None:
        self.stale_after_s = stale_after_s
        self.last_success: float | None = None
        self.disabled: str | None = None  # why the service does nothing (missing key)
        self.last_observation: str | None = None

    def success(self) -> None:
        self.last_success = time.time()
        SOURCE_LAST_SUCCESS.labels(SERVICE, FRED).set(self.last_success)

    def error(self, kind: str) -> None:
        SOURCE_ERRORS.labels(SERVICE, FRED, kind).inc()

    def report(self) -> dict[str, Any]:
        if self.disabled:
            return {"status": "disabled", "reason": self.disabled}
        age = None if self.last_success is None else round(time.time() - self.last_success, 3)
        status = "starting" if age is None else ("ok" if age < self.stale_after_s else "stale")
        return {"status": status, "last_success_age_s": age, "last_observation_date": self.last_observation}
