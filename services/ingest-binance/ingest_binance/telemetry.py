"""ingest-binance's sources and what /healthz reports (metrics live in syi_shared.source_health)."""

from __future__ import annotations

import time
from typing import Any

from syi_shared.source_health import SourceHealth

SERVICE = "ingest-binance"
WS = "binance_ws"
REST = "binance_rest"


class Health(SourceHealth):
    """Last success per source and the current mode; read by the telemetry thread."""

    def __init__(self, stale_after_s: float) -> None:
        super().__init__(SERVICE, {WS: stale_after_s, REST: stale_after_s})
        self.mode = "starting"  # starting | stream | reconnecting | rest_fallback
        self.pairs: list[str] = []
        self.skipped_pairs: dict[str, str] = {}

    def report(self) -> dict[str, Any]:
        # ok while either source (stream or REST) is fresh
        now = time.time()
        ages = self.ages(now)
        fresh = any(self.state(source, now) == "ok" for source in ages)
        status = "ok" if fresh else ("starting" if not ages else "stale")
        return {"status": status, "mode": self.mode, "pairs": self.pairs, "skipped_pairs": self.skipped_pairs,
                "last_success_age_s": ages}
