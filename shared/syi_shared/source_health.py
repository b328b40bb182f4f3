"""What every ingester tracks about its sources, its broker and its loops, and reports on /healthz.

`SourceHealth` counts errors and reconnects, stamps each source's last success (a gauge and a time
the telemetry thread reads) and says per source whether it is starting, ok or stale. It also holds
the ingester's `BrokerWatch` (its producer's error callback and a metadata probe of the topics it
publishes), the `Supervisor` its loops run under and, once set, its publisher's `check` (values
waiting for room, values rejected: syi_shared.publisher), so `report()` is the whole truth: the
worst of sources, broker, tasks and publishing (syi_shared.health).
Services subclass it only to say when their sources are good enough and to add detail.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from syi_shared import metric_names
from syi_shared.health import HealthReport, Supervisor, broker_health, broker_watch
from syi_shared.metrics import counter, gauge

SOURCE_ERRORS = counter(metric_names.SOURCE_ERRORS, "Failed source calls and rejected source data, by kind",
                        labels=("service", "source", "kind"))
SOURCE_RECONNECTS = counter(metric_names.SOURCE_RECONNECTS, "Source connections re-opened",
                            labels=("service", "source"))
SOURCE_LAST_SUCCESS = gauge(metric_names.SOURCE_LAST_SUCCESS, "Unix time of the last good data from a source",
                            labels=("service", "source"))


class SourceHealth:
    """Per source: last success (unix time), how old it may get, and why it is switched off, if it is."""

    def __init__(self, service: str, stale_after_s: dict[str, float] | None = None,
                 topics: Iterable[str] = ()) -> None:
        self.service = service
        self.stale_after_s: dict[str, float] = dict(stale_after_s or {})
        self.last_success: dict[str, float] = {}
        self.disabled: dict[str, str] = {}  # source -> reason it is not polled at all
        # fed by make_producer(..., watch=health.broker) and, once started, its probe of `topics`
        self.broker = broker_watch(topics)
        self.tasks = Supervisor(service)
        self.publishing: Callable[[], HealthReport] = HealthReport  # the ingester sets its Publisher.check

    def success(self, source: str) -> None:
        now = time.time()
        self.last_success[source] = now
        SOURCE_LAST_SUCCESS.labels(self.service, source).set(now)

    def error(self, source: str, kind: str) -> None:
        SOURCE_ERRORS.labels(self.service, source, kind).inc()

    def reconnect(self, source: str) -> None:
        SOURCE_RECONNECTS.labels(self.service, source).inc()

    def ages(self, now: float | None = None) -> dict[str, float]:
        """Seconds since each source's last success (ms precision); sources never successful are absent."""
        now = time.time() if now is None else now
        return {source: round(now - at, 3) for source, at in self.last_success.items()}

    def state(self, source: str, now: float | None = None) -> str:
        """"starting" (no success yet), "ok" (younger than its limit) or "stale"."""
        at = self.last_success.get(source)
        if at is None:
            return "starting"
        now = time.time() if now is None else now
        return "ok" if now - at < self.stale_after_s[source] else "stale"

    def why_not(self, source: str, now: float) -> str:
        """The reason a source that is not "ok" gives."""
        if self.state(source, now) == "starting":
            return f"source {source}: no data yet"
        return (f"source {source}: last success {now - self.last_success[source]:.0f} s ago "
                f"(limit {self.stale_after_s[source]:.0f} s)")

    def sources(self, now: float) -> HealthReport:
        """ok when every source with a limit is ok; services override when fewer will do."""
        reasons = [self.why_not(source, now) for source in self.stale_after_s if self.state(source, now) != "ok"]
        if not self.stale_after_s:
            reasons.append("starting: no source watched yet")
        return HealthReport(status="degraded" if reasons else "ok", reasons=reasons)

    def detail(self, now: float) -> dict[str, Any]:
        ages = self.ages(now)
        return {
            "sources": {source: {"state": self.state(source, now), "last_success_age_s": ages.get(source)}
                        for source in self.stale_after_s},
            "disabled": self.disabled,
        }

    def report(self) -> dict[str, Any]:
        """The /healthz body: the worst of sources, broker, tasks and publishing, with the reasons and detail."""
        now = time.time()
        return HealthReport.combine(self.sources(now), broker_health(self.broker, now), self.tasks.check(),
                                    self.publishing(), **self.detail(now)).body()


def http_error_kind(status: int) -> str:
    """The `kind` label of a source call that answered with an HTTP error status."""
    return "http_429" if status == 429 else ("http_5xx" if status >= 500 else "http_4xx")
