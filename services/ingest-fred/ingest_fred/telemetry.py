"""ingest-fred's source and what /healthz reports (metrics live in syi_shared.source_health)."""

from __future__ import annotations

from typing import Any

from syi_shared.health import HealthReport
from syi_shared.source_health import SourceHealth
from syi_shared.topics import TRAD_TBILL

SERVICE = "ingest-fred"
FRED = "fred"


class Health(SourceHealth):
    """The one FRED source; `disabled[FRED]` says why the service does nothing (missing key)."""

    def __init__(self, stale_after_s: float) -> None:
        super().__init__(SERVICE, {FRED: stale_after_s}, topics=(TRAD_TBILL,))
        self.last_observation: str | None = None

    def sources(self, now: float) -> HealthReport:
        if FRED in self.disabled:
            # degraded, not failed: a restart cannot conjure a key
            return HealthReport.degraded(f"source {FRED}: disabled: {self.disabled[FRED]}")
        return super().sources(now)

    def detail(self, now: float) -> dict[str, Any]:
        return {"last_success_age_s": self.ages(now).get(FRED), "last_observation_date": self.last_observation,
                "disabled": self.disabled}
