"""ray-calc's own metrics; the stream-wide ones (consumed, published, late, emit delay,
calculation latency, freshness) live in syi_shared.streaming.StreamMetrics."""

from __future__ import annotations

from syi_shared import metric_names
from syi_shared.metrics import gauge
from syi_shared.models import RayRecord

SERVICE = "ray-calc"


class RayMetrics:
    def __init__(self) -> None:
        # Share of candidates whose price, book and APY were all present in the newest bucket.
        self.completeness = gauge(
            metric_names.CONSTITUENT_COMPLETENESS, "Share of constituents with complete data in the newest bucket"
        )

    def bucket(self, rays: list[RayRecord]) -> None:
        if rays:
            complete = sum(1 for record in rays if record.ray_decimal is not None)
            self.completeness.set(complete / len(rays))
