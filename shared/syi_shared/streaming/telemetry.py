"""The calculators' shared metrics and health (docs/operations.md, "Health")."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from syi_shared import metric_names
from syi_shared.broker_watch import BrokerWatch
from syi_shared.health import HealthReport, InputWatch, broker_health
from syi_shared.metrics import counter, gauge, histogram
from syi_shared.timefmt import time_text


class StreamMetrics:
    """The calculators' shared metrics (names from metric_names), labelled by service."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.consumed = counter(metric_names.MESSAGES_CONSUMED, "Input messages read", ("service", "topic"))
        self.published = counter(metric_names.MESSAGES_PUBLISHED, "Messages produced, by topic", ("service", "topic"))
        self.dead = counter(metric_names.DEAD_LETTERS, "Messages sent to a DLQ", ("service", "topic", "reason"))
        self.late = counter(metric_names.LATE_ITEMS, "Inputs for an already closed bucket", ("service", "topic"))
        self.degraded = counter(metric_names.DEGRADED_BUCKETS, "Buckets whose calculation failed, published degraded",
                                ("service",))
        self.emit_delay = histogram(
            metric_names.BUCKET_EMIT_DELAY, "Publish time minus bucket end", ("service",),
            buckets=(0.5, 1, 2, 3, 5, 10, 30, 60, 120, 300, 900, 3600),
        )
        self.latency = histogram(
            metric_names.CALCULATION_LATENCY, "Newest input event time to publish", ("service",),
            buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 120, 300, 900, 3600),
        )
        self.freshness = gauge(metric_names.FRESHNESS, "Now minus the newest published bucket end", ("service",))
        self.newest_event = gauge(
            metric_names.NEWEST_EVENT, "Event time (outputs: bucket end) of the newest value handled", ("service", "topic")
        )
        self.last_bucket_ms: int | None = None
        self.freshness.labels(service).set_function(self._freshness)
        self._newest: dict[str, int] = {}

    def saw(self, topic: str, event_ms: int) -> None:
        if event_ms > self._newest.get(topic, 0):
            self._newest[topic] = event_ms
            self.newest_event.labels(self.service, topic).set(event_ms / 1000)

    def _freshness(self) -> float:
        return time.time() - self.last_bucket_ms / 1000 if self.last_bucket_ms is not None else float("nan")


@dataclass
class StreamHealth:
    """What /healthz reports; written by the stateful step, read by the HTTP thread.

    `degraded` (docs/operations.md) when no broker is reachable, when an input has been silent
    for longer than its topic's cadence, when the last closed bucket lags the wall clock by
    more than `LAG_LIMIT_S` (not while a replay's markers are in charge: a replay is behind by
    design), or while valid inputs are refused (`methodology_mismatch: ...`)."""

    service: str
    inputs: InputWatch | None = None  # the input topics against their cadences
    broker: BrokerWatch | None = None
    started: float = field(default_factory=time.time)
    last_closed_ms: int | None = None
    closed_at: float | None = None
    buckets_closed: int = 0
    late_items: int = 0
    failed_closes: int = 0
    replaying: bool = False  # a tape replay's progress markers are in charge (idleness off)
    refused_inputs: int = 0  # valid inputs the calculator would not take (e.g. another methodology)
    refused_at: float | None = None
    refused_reason: str | None = None  # the newest refusal's dead-letter reason
    lock: threading.Lock = field(default_factory=threading.Lock)

    LAG_LIMIT_S = 120.0
    START_GRACE_S = 180.0  # no bucket closed this long after start is news
    # a refused input keeps the status degraded this long: ray-calc publishes every minute, so a
    # ray-calc on another methodology file keeps it degraded until it is fixed or stopped
    REFUSED_RECENT_S = 600.0

    def closed(self, bucket_ms: int) -> None:
        with self.lock:
            self.last_closed_ms, self.closed_at = bucket_ms, time.time()
            self.buckets_closed += 1

    def resumed(self, bucket_ms: int) -> None:
        with self.lock:
            self.last_closed_ms = bucket_ms

    def refused(self, reason: str, now: float) -> None:
        with self.lock:
            self.refused_inputs += 1
            self.refused_at, self.refused_reason = now, reason

    def refusals(self, now: float) -> HealthReport:
        """Degraded while inputs were refused in the last `REFUSED_RECENT_S`."""
        if self.refused_at is None or now - self.refused_at >= self.REFUSED_RECENT_S:
            return HealthReport()
        return HealthReport.degraded(
            f"{self.refused_reason} ({self.refused_inputs} refused since start, the newest "
            f"{now - self.refused_at:.0f} s ago)")

    def arrived(self, topic: str, now: float) -> None:
        if self.inputs is not None:
            self.inputs.seen(topic, now)

    def lag(self, now: float) -> HealthReport:
        """The calculator's own progress against the wall clock."""
        if self.replaying:
            return HealthReport()
        if self.last_closed_ms is not None:
            behind = now - self.last_closed_ms / 1000
            if behind > self.LAG_LIMIT_S:
                return HealthReport.degraded(
                    f"lag: last closed bucket {time_text(self.last_closed_ms)} is {behind:.0f} s behind the wall clock")
        elif now - self.started > self.START_GRACE_S:
            return HealthReport.degraded(f"lag: no bucket closed in {now - self.started:.0f} s since start")
        return HealthReport()

    def report(self) -> HealthReport:
        now = time.time()
        with self.lock:
            parts = [broker_health(self.broker, now), self.lag(now), self.refusals(now)]
            if self.inputs is not None and not self.replaying:
                parts.append(self.inputs.check(now))
            return HealthReport.combine(
                *parts,
                service=self.service,
                uptime_seconds=round(now - self.started, 1),
                last_closed_bucket=time_text(self.last_closed_ms) if self.last_closed_ms is not None else None,
                seconds_since_close=round(now - self.closed_at, 1) if self.closed_at else None,
                buckets_closed=self.buckets_closed,
                late_items=self.late_items,
                failed_closes=self.failed_closes,
                refused_inputs=self.refused_inputs,
                replaying=self.replaying,
            )
