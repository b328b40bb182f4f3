"""ingest-fred's source and what /healthz reports (metrics live in syi_shared.source_health)."""

from __future__ import annotations

import time
from typing import Any

from syi_shared.source_health import SourceHealth

SERVICE = "ingest-fred"
FRED = "fred"


class Health(SourceHealth):
    """The one FRED source; `disabled[FRED]` says why the service does nothing (missing key)."""

    def __init__(self, stale_after_s: float) -> None:
        super().__init__(SERVICE, {FRED: stale_after_s})
        self.last_observation: str | None = None

    def report(self) -> dict[str, Any]:
        if FRED in self.disabled:
            return {"status": "disabled", "reason": self.disabled[FRED]}
        now = time.time()
        return {"status": self.state(FRED, now), "last_success_age_s": self.ages(now).get(FRED),
                "last_observation_date": self.last_observation}
