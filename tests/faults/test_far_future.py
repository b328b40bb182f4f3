"""One valid cc.prices tick for USDC on binance stamped in the year 2100 (event AND ingest
time, so the clock-free plausibility bounds let it through), produced while the live feed
runs; then the whole feed stops for 60 s (harsher than ingest-binance killed: every input
partition goes silent; test_whole_system.py kills the real ingester). The live clock must hold
(docs/streaming.md): no bucket closes beyond the wall clock (+ the allowed lateness), ray-calc's
memory stays flat, and the index resumes within 2 minutes of the feed's return.

`make test-long` (SYI_FAULTS_LONG=1) then SIGKILLs ray-calc, restarts it from its checkpoint
(which holds the 2100 tick) and stops the feed once more: the same must hold."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from syi_shared.methodology.engine import BUCKET_MS
from syi_shared.settings import ServiceSettings
from syi_shared.timefmt import millis, time_text
from tests.faults.feed import Delivery, LiveFeed, now_ms, produce_one
from tests.faults.hostile import FAR_FUTURE, valid
from tests.faults.pipeline import (
    FAULTS_LONG, RSS_LIMIT_MB, SKEW_MS, Pipeline, early, probe, published_since, rss_mb,
)

# Minutes of wall clock: `make test-long` only. `make test` covers the same rules in
# tests/ray_calc/test_bucket_clock.py (a far-future stamp, also restored from a snapshot).
pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(780),
              pytest.mark.skipif(not FAULTS_LONG, reason="minutes long: `make test-long` (SYI_FAULTS_LONG=1)")]

OUTAGE_S = 60
RESUME_WITHIN_S = 120


@dataclass(frozen=True)
class Sample:
    at_ms: int
    rss_mb: float
    last_closed_ms: dict[str, int | None]  # per calculator, from /healthz


def sample(pipeline: Pipeline) -> Sample:
    assert pipeline.ray.process is not None
    closed = {}
    for calculator in pipeline.calculators:
        text = probe(calculator).body.get("last_closed_bucket")
        closed[calculator.module] = millis(text) if text else None
    return Sample(now_ms(), rss_mb(pipeline.ray.process.pid), closed)


def run_away(samples: list[Sample]) -> list[str]:
    """Buckets the calculators said they had closed beyond the wall clock, or memory over the limit."""
    found = []
    for s in samples:
        for module, closed in s.last_closed_ms.items():
            if closed is not None and closed > s.at_ms + SKEW_MS:
                found.append(f"{time_text(s.at_ms)}: {module} closed {time_text(closed)}")
        if s.rss_mb >= RSS_LIMIT_MB:
            found.append(f"{time_text(s.at_ms)}: ray-calc RSS {s.rss_mb:.0f} MB")
    return found


def watch(pipeline: Pipeline, seconds: float, samples: list[Sample]) -> None:
    """Sample every second for `seconds`; stop the calculators at the first sign of a run-away,
    so a failing run does not fill the topics (and the machine) with invented buckets."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(sample(pipeline))
        if problems := run_away(samples[-1:]):
            pipeline.stop()
            pytest.fail(f"run-away: {problems[0]}")
        time.sleep(1)


def outage_then_resume(feed: LiveFeed, pipeline: Pipeline, settings: ServiceSettings, since: int,
                       samples: list[Sample]) -> tuple[int, int]:
    """Stop the feed for OUTAGE_S, bring it back, wait for the index of a minute after its return;
    returns (when it returned, when that record was published)."""
    feed.pause()
    watch(pipeline, OUTAGE_S, samples)
    feed.resume()
    back = now_ms()
    deadline = time.monotonic() + RESUME_WITHIN_S + 30
    while time.monotonic() < deadline:
        watch(pipeline, 2, samples)
        fresh = [millis(r.value["published_at"]) for r in published_since(settings, "syi.calculated", since)
                 if r.bucket_ms > back]
        if fresh:
            return back, min(fresh)
    return back, now_ms()


def test_far_future_tick_then_a_feed_outage_closes_nothing_ahead_of_the_wall_clock(
    provisioned: ServiceSettings, tmp_path: Path
) -> None:
    since = now_ms()
    feed = LiveFeed(provisioned).start()
    pipeline = Pipeline(provisioned, since, tmp_path)
    samples: list[Sample] = []
    resumptions: list[tuple[int, int]] = []
    try:
        pipeline.start()
        key, tick = valid("cc.prices", since)
        future = produce_one(provisioned, "cc.prices", key,
                             orjson.dumps({**tick, "event_time": FAR_FUTURE, "ingest_time": FAR_FUTURE}))
        assert isinstance(future, Delivery), future
        # Every feed live: the index keeps being published, for the present.
        deadline = time.monotonic() + 2 * BUCKET_MS / 1000 + 30
        while not published_since(provisioned, "syi.calculated", since) and time.monotonic() < deadline:
            watch(pipeline, 2, samples)
        assert published_since(provisioned, "syi.calculated", since), f"no index while the feed ran:\n{pipeline.logs()}"

        resumptions.append(outage_then_resume(feed, pipeline, provisioned, since, samples))
        if FAULTS_LONG:
            # Its checkpoint holds the 2100 tick: restarted, ray-calc must not run away either.
            assert pipeline.ray.stop(signal.SIGKILL) == -signal.SIGKILL
            pipeline.ray.start()
            resumptions.append(outage_then_resume(feed, pipeline, provisioned, since, samples))
        exits = pipeline.alive()
    finally:
        pipeline.stop()
        feed.stop()

    assert exits == {"ray_calc": None, "syi_calc": None}, pipeline.logs()
    assert run_away(samples) == []
    peak = max(s.rss_mb for s in samples)
    assert peak < RSS_LIMIT_MB, f"ray-calc RSS peaked at {peak:.0f} MB"
    for back, published in resumptions:
        assert published - back <= RESUME_WITHIN_S * 1000, (
            f"the feed returned at {time_text(back)}; the index of a later minute came only at {time_text(published)}")

    ended = now_ms()
    for topic in ("ray.calculated", "syi.calculated"):
        records = published_since(provisioned, topic, since)
        assert early(records) == [], f"{topic}: buckets closed ahead of the wall clock"
        assert max(r.bucket_ms for r in records) <= ended + SKEW_MS
        # Caught up minute by minute: at most one record per key and minute of the run.
        per_key: dict[str, set[int]] = {}
        for record in records:
            per_key.setdefault(record.value.get("symbol") or record.value["index_id"], set()).add(record.bucket_ms)
        minutes = (ended - since) // BUCKET_MS + 2
        assert all(len(buckets) <= minutes for buckets in per_key.values()), {k: len(v) for k, v in per_key.items()}
