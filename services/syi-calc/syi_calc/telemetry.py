"""syi-calc's own metrics (the newest index value and its constituents); the stream-wide
ones live in syi_shared.streaming.StreamMetrics."""

from __future__ import annotations

from syi_shared import metric_names
from syi_shared.metrics import counter, gauge
from syi_shared.models import IndexValue

SERVICE = "syi-calc"


class IndexMetrics:
    def __init__(self) -> None:
        self.updates = counter(metric_names.INDEX_UPDATES, "Index values published")
        self.value = gauge(metric_names.INDEX_VALUE, "Newest SYI value, percent")
        self.premium = gauge(metric_names.RISK_PREMIUM, "Newest SYI minus the T-bill APY, decimal")
        self.completeness = gauge(
            metric_names.CONSTITUENT_COMPLETENESS, "Share of the weight set included in the newest value"
        )
        self.quality = gauge(metric_names.DATA_QUALITY, "Coverage of the newest value (weight share with complete data)")
        self.ray = gauge(metric_names.CONSTITUENT_RAY, "Constituent RAY in the newest value", ("symbol",))
        self.weight = gauge(metric_names.CONSTITUENT_WEIGHT, "Renormalised weight in the newest value", ("symbol",))
        self.score = gauge(metric_names.CONSTITUENT_SCORE, "Constituent scores in the newest value", ("symbol", "score"))

    def published(self, value: IndexValue) -> None:
        self.updates.inc()
        self.value.set(value.syi_percent)
        if value.risk_premium_decimal is not None:
            self.premium.set(value.risk_premium_decimal)
        rows = value.constituents
        included = sum(1 for row in rows if row.excluded_reason is None)
        self.completeness.set(included / len(rows) if rows else 0.0)
        self.quality.set(value.coverage)
        for row in rows:
            self.ray.labels(row.symbol).set(row.ray_decimal if row.ray_decimal is not None else float("nan"))
            self.weight.labels(row.symbol).set(row.weight_renormalised)
            for name, score in (("peg", row.peg_score), ("liquidity", row.liquidity_score),
                                ("counterparty", row.counterparty_score), ("worst", row.s_worst)):
                self.score.labels(row.symbol, name).set(score if score is not None else float("nan"))
