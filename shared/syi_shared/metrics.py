"""Prometheus collectors created once per process from the names in `metric_names`.

Services ask for a collector by name (`counter(MESSAGES_PUBLISHED, labels=("service", "topic"))`);
asking twice returns the same collector instead of a duplicate-registration error.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # `_created` series double every counter and help no dashboard

_collectors: dict[str, object] = {}

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0)


def _get(kind, name: str, documentation: str, labels: Sequence[str], **kwargs):
    existing = _collectors.get(name)
    if existing is not None:
        return existing
    collector = kind(name, documentation, labelnames=tuple(labels), registry=REGISTRY, **kwargs)
    _collectors[name] = collector
    return collector


def counter(name: str, documentation: str = "", labels: Sequence[str] = ()) -> Counter:
    # prometheus_client appends `_total` itself
    return _get(Counter, name.removesuffix("_total"), documentation or name, labels)


def gauge(name: str, documentation: str = "", labels: Sequence[str] = ()) -> Gauge:
    return _get(Gauge, name, documentation or name, labels)


def histogram(
    name: str, documentation: str = "", labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS
) -> Histogram:
    return _get(Histogram, name, documentation or name, labels, buckets=tuple(buckets))
