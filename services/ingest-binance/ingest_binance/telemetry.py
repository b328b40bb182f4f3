"""ingest-binance's sources and what /healthz reports (metrics live in syi_shared.source_health)."""

from __future__ import annotations

from typing import Any

from syi_shared.health import HealthReport
from syi_shared.source_health import SourceHealth
from syi_shared.topics import CC_ORDERBOOK, CC_PRICES

SERVICE = "ingest-binance"
WS = "binance_ws"
REST = "binance_rest"


class Health(SourceHealth):
    """Last success per source and the current mode; read by the telemetry thread."""

    def __init__(self, stale_after_s: float) -> None:
        super().__init__(SERVICE, {WS: stale_after_s, REST: stale_after_s}, topics=(CC_PRICES, CC_ORDERBOOK))
        self.mode = "starting"  # starting | stream | reconnecting | rest_fallback
        self.pairs: list[str] = []
        self.skipped_pairs: dict[str, str] = {}

    def sources(self, now: float) -> HealthReport:
        # either source will do: the REST fallback covers a stream outage
        ages = self.ages(now)
        if any(self.state(source, now) == "ok" for source in ages):
            return HealthReport()
        if not ages:
            return HealthReport.degraded("source binance: no data yet")
        newest = min(ages.values())
        return HealthReport.degraded(f"source binance: no data for {newest:.0f} s from the stream or REST "
                                     f"(limit {self.stale_after_s[WS]:.0f} s)")

    def detail(self, now: float) -> dict[str, Any]:
        return {"mode": self.mode, "pairs": self.pairs, "skipped_pairs": self.skipped_pairs,
                "last_success_age_s": self.ages(now)}
