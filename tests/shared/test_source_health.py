"""SourceHealth: the source metrics it moves, the per-source states, and the /healthz report it gives
(sources, broker and background tasks together)."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY

from syi_shared import source_health
from syi_shared.source_health import SourceHealth


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock(1_700_000_000.0)
    monkeypatch.setattr(source_health.time, "time", clock)
    return clock


@pytest.fixture
def service() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"  # the collectors are process-wide: each test its own label


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_success_stamps_the_time_and_the_gauge(clock, service):
    health = SourceHealth(service, {"a": 30.0})
    health.success("a")
    assert health.last_success == {"a": 1_700_000_000.0}
    assert sample("syi_source_last_success_timestamp_seconds", service=service, source="a") == 1_700_000_000.0
    clock.now += 5
    health.success("a")
    assert sample("syi_source_last_success_timestamp_seconds", service=service, source="a") == 1_700_000_005.0


def test_errors_and_reconnects_count_by_service_source_and_kind(service):
    health = SourceHealth(service)
    health.error("a", "http_500")
    health.error("a", "http_500")
    health.error("a", "invalid")
    health.reconnect("b")
    assert sample("syi_source_errors_total", service=service, source="a", kind="http_500") == 2.0
    assert sample("syi_source_errors_total", service=service, source="a", kind="invalid") == 1.0
    assert sample("syi_source_reconnects_total", service=service, source="b") == 1.0
    assert sample("syi_source_reconnects_total", service=service, source="a") is None
    assert health.last_success == {}  # errors and reconnects are not successes


def test_ages_are_rounded_to_ms_and_only_for_sources_that_succeeded(clock, service):
    health = SourceHealth(service, {"a": 30.0, "b": 30.0})
    health.success("a")
    clock.now += 12.34567
    assert health.ages() == {"a": 12.346}
    assert health.ages(now=clock.now + 1) == {"a": 13.346}


def test_state_is_starting_then_ok_then_stale_at_the_limit(clock, service):
    health = SourceHealth(service, {"a": 30.0})
    assert health.state("a") == "starting"
    health.success("a")
    clock.now += 29.9
    assert health.state("a") == "ok"
    clock.now += 0.1  # exactly the limit: stale
    assert health.state("a") == "stale"


def test_report_is_ok_only_when_every_watched_source_is_ok(clock, service):
    health = SourceHealth(service, {"a": 10.0, "b": 100.0})
    assert health.report() == {
        "status": "degraded",
        "reasons": ["source a: no data yet", "source b: no data yet"],
        "sources": {"a": {"state": "starting", "last_success_age_s": None},
                    "b": {"state": "starting", "last_success_age_s": None}},
        "disabled": {},
        "kafka": "reachable",
    }
    health.success("a")
    clock.now += 1
    assert health.report()["reasons"] == ["source b: no data yet"]
    health.success("b")
    clock.now += 2
    assert health.report() == {
        "status": "ok",
        "reasons": [],
        "sources": {"a": {"state": "ok", "last_success_age_s": 3.0},
                    "b": {"state": "ok", "last_success_age_s": 2.0}},
        "disabled": {},
        "kafka": "reachable",
    }
    clock.now += 10  # a is 13 s old, its limit is 10
    report = health.report()
    assert report["status"] == "degraded" and report["reasons"] == ["source a: last success 13 s ago (limit 10 s)"]
    assert report["sources"]["a"] == {"state": "stale", "last_success_age_s": 13.0}
    assert report["sources"]["b"] == {"state": "ok", "last_success_age_s": 12.0}


def test_report_says_which_sources_are_disabled_and_why(service):
    health = SourceHealth(service, {"a": 10.0})
    health.disabled["c"] = "SYI_C_API_KEY is not set"
    report = health.report()
    assert report["disabled"] == {"c": "SYI_C_API_KEY is not set"}
    assert set(report["sources"]) == {"a"}  # a disabled source has no limit and is not watched
    assert report["reasons"] == ["source a: no data yet"]


def test_a_report_with_no_watched_source_is_degraded_as_starting(service):
    report = SourceHealth(service).report()
    assert report["status"] == "degraded" and report["reasons"] == ["starting: no source watched yet"]


def test_the_report_includes_the_broker_and_the_background_tasks(clock, service):
    health = SourceHealth(service, {"a": 10.0})
    health.success("a")
    health.tasks.failed("poll_a", RuntimeError("bug"))
    report = health.report()
    assert (report["status"], report["kafka"]) == ("degraded", "reachable")
    assert report["reasons"] == ["task poll_a: failed 1x since its last progress, retrying (RuntimeError: bug)"]
    health.tasks.progressed("poll_a")
    assert health.report()["status"] == "ok"


def test_limits_are_copied_not_shared(service):
    limits = {"a": 10.0}
    health = SourceHealth(service, limits)
    health.stale_after_s["b"] = 5.0
    assert limits == {"a": 10.0}
