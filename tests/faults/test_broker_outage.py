"""The broker SIGKILLed for 80 s while the live pipeline runs (a live feed stamped with the wall
clock), then started again on its data. What must hold (docs/operations.md, docs/streaming.md):

* no input that reached the broker in time is dead-lettered as `late`: "in time" = the broker
  acknowledged it before its bucket's end + the allowed lateness (what the feed's producer
  buffered through the outage and delivered after a bucket's deadline may be late);
* no record is published before its bucket's end + the allowed lateness;
* the calculators' /healthz says `degraded` (HTTP 200: no restart storm; /readyz not 200)
  while the broker is away, and `ok` again after it is back.

The broker is the suite's own, so the session broker stays up for the other tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from syi_shared.methodology.engine import BUCKET_MS, bucket_end_of
from syi_shared.timefmt import time_text
from tests.faults.broker import OwnBroker
from tests.faults.feed import LiveFeed, now_ms
from tests.faults.pipeline import (
    FAULTS_LONG, LATENESS_MS, Health, Pipeline, Published, dead_letters_since, early, probe, published_since,
)

# Minutes of wall clock: `make test-long` only. `make test` kills the broker in
# tests/faults/test_kill_campaign.py and tests/shared/test_health_outage.py, and covers the clock's
# rules for an unreachable broker in tests/ray_calc/test_bucket_clock.py.
pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(480),
              pytest.mark.skipif(not FAULTS_LONG, reason="minutes long: `make test-long` (SYI_FAULTS_LONG=1)")]

OUTAGE_S = 80
DEGRADED_WITHIN_S = 15  # the health contract
SLACK_S = 5  # probe spacing, process scheduling on a busy 2-core machine
OK_AGAIN_WITHIN_S = 90


@dataclass(frozen=True)
class Probe:
    at_ms: int
    module: str
    health: Health
    ready: Health


@dataclass
class Outage:
    """What the module's one run saw."""

    killed_ms: int
    back_ms: int
    before: list[Probe]
    during: list[Probe]
    after: list[Probe]
    feed: LiveFeed
    index: list[Published]
    rays: list[Published]
    letters: list[dict[str, Any]]
    exits: dict[str, int | None]
    logs: str


def probes(pipeline: Pipeline) -> list[Probe]:
    at = now_ms()
    return [Probe(at, c.module, probe(c), probe(c, "/readyz")) for c in pipeline.calculators]


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    broker = OwnBroker(tmp_path_factory.mktemp("fault-broker")).start()
    settings = broker.provision()
    since = now_ms()
    feed = LiveFeed(settings).start()
    pipeline = Pipeline(settings, since, tmp_path_factory.mktemp("outage"))
    try:
        pipeline.start()
        deadline = time.monotonic() + 2 * BUCKET_MS / 1000 + 30
        while not published_since(settings, "syi.calculated", since) and time.monotonic() < deadline:
            time.sleep(2)
        assert published_since(settings, "syi.calculated", since), f"no index before the outage:\n{pipeline.logs()}"
        before = probes(pipeline)

        broker.kill()
        killed = now_ms()
        during: list[Probe] = []
        while now_ms() < killed + OUTAGE_S * 1000:
            during += probes(pipeline)
            time.sleep(1)
        broker.start()
        back = now_ms()

        after: list[Probe] = []
        deadline = time.monotonic() + OK_AGAIN_WITHIN_S
        while time.monotonic() < deadline:
            after += probes(pipeline)
            if all(p.health.status == "ok" for p in after[-2:]):
                break
            time.sleep(1)
        # Until the index of a minute after the broker's return is out (or time is up).
        deadline = time.monotonic() + 2 * BUCKET_MS / 1000 + 30
        while time.monotonic() < deadline and not any(
            r.bucket_ms > back for r in published_since(settings, "syi.calculated", since)
        ):
            time.sleep(2)
        exits = pipeline.alive()
        pipeline.stop()
        feed.stop()
        yield Outage(
            killed_ms=killed, back_ms=back, before=before, during=during, after=after, feed=feed,
            index=published_since(settings, "syi.calculated", since),
            rays=published_since(settings, "ray.calculated", since),
            letters=dead_letters_since(settings, since), exits=exits, logs=pipeline.logs(),
        )
    finally:
        pipeline.stop()
        feed.stop()
        broker.stop()


def test_calculators_survive_the_outage_and_publish_the_minutes_after_it(outage: Outage) -> None:
    assert outage.exits == {"ray_calc": None, "syi_calc": None}, outage.logs
    assert any(r.bucket_ms > outage.back_ms for r in outage.index), f"no index after the return:\n{outage.logs}"
    assert not outage.feed.failures, outage.feed.failures[:5]


def test_health_is_degraded_while_the_broker_is_away_and_ok_after(outage: Outage) -> None:
    assert [(p.module, p.health.http, p.health.status) for p in outage.before] == [
        ("ray_calc", 200, "ok"), ("syi_calc", 200, "ok")]
    # Liveness stays 200 (a restart would not bring the broker back); readiness does not.
    assert [p for p in outage.during if p.health.http != 200] == []
    settled = [p for p in outage.during if p.at_ms >= outage.killed_ms + (DEGRADED_WITHIN_S + SLACK_S) * 1000]
    assert settled, "no probe late enough in the outage"
    not_degraded = [(time_text(p.at_ms), p.module, p.health.status, p.ready.http)
                    for p in settled if p.health.status != "degraded" or p.ready.http == 200]
    assert not_degraded == [], f"health more than {DEGRADED_WITHIN_S} s into the outage"
    assert all(p.health.body.get("reasons") for p in settled), "degraded without a reason"
    assert [(p.health.status, p.ready.http) for p in outage.after[-2:]] == [("ok", 200), ("ok", 200)], (
        f"{OK_AGAIN_WITHIN_S} s after the broker came back: {[(p.module, p.health.body) for p in outage.after[-2:]]}")


def test_no_record_is_published_before_its_bucket_end_plus_lateness(outage: Outage) -> None:
    assert early(outage.index + outage.rays) == []


def test_no_input_the_broker_had_in_time_is_dead_lettered_as_late(outage: Outage) -> None:
    acked = {(d.topic, d.partition, d.offset): d for d in outage.feed.deliveries}
    late = [letter for letter in outage.letters if letter["error"].startswith("late")]
    on_time = []
    for letter in late:
        delivery = acked.get((letter["source_topic"], letter["partition"], letter["offset"]))
        if delivery is None or delivery.event_ms is None or (
            delivery.acked_ms <= bucket_end_of(delivery.event_ms) + LATENESS_MS
        ):
            on_time.append(f"{letter['source_topic']}/{letter['partition']}@{letter['offset']}: {letter['error']}")
    assert on_time == [], (f"{len(on_time)} of {len(late)} late dead letters were in time (broker away "
                           f"{time_text(outage.killed_ms)} to {time_text(outage.back_ms)}): {on_time[:5]}")
