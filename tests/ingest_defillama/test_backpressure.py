"""ingest-defillama whose producer buffer fills while its broker is SIGKILLed: the polls stop
(backpressure, counted and on /healthz), nothing handed to the producer is lost, and polling
resumes once the broker is back. The broker is the fault suite's own (tests/faults/broker.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest_defillama.worker import DefiLlamaIngester
from syi_shared.kafka import make_producer
from syi_shared.publisher import Publisher
from tests.faults.broker import OwnBroker
from tests.ingest_defillama.test_ingest_defillama import SERVICE, TOPICS, expected_pools, settings_for
from tests.replay_server.harness import ReplayServer, TopicTail, metric, running, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(300)]

INTERVAL_S = 2.0
QUEUE = 3  # messages the producer may hold: one poll overflows it


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[OwnBroker]:
    broker = OwnBroker(tmp_path / "broker").start()
    broker.provision()
    yield broker
    broker.stop()


async def test_a_full_producer_buffer_pauses_the_polls_and_loses_nothing(
    replay: ReplayServer, own_broker: OwnBroker
) -> None:
    replay.control(seek_s=0, speed=0)
    pools = expected_pools(0)
    settings = settings_for(replay, own_broker.settings, defillama_pools_interval_s=INTERVAL_S,
                            defillama_stablecoins_interval_s=INTERVAL_S)
    ingester = DefiLlamaIngester(settings)
    watch = ingester.health.broker
    # the service's own publisher, with a tiny queue and a quick reconnect (librdkafka's backoff reaches 10 s)
    publisher = Publisher(SERVICE, watch=watch, producer=make_producer(
        settings, watch=watch, **{"queue.buffering.max.messages": QUEUE, "reconnect.backoff.max.ms": 500}))
    ingester.publisher = publisher
    ingester.health.publishing = publisher.check
    backlogged = metric("syi_messages_backlogged_total", service=SERVICE, topic="dl.apy")
    tail = TopicTail(own_broker.settings, TOPICS)

    def polls() -> int:
        return len(replay.requests("/pools")) + len(replay.requests("/stablecoins"))

    async with running(ingester):
        await tail.wait_for(lambda _: {m["pool"] for m in tail.of("dl.apy")} >= pools.keys(), what="a first poll")
        await wait_until(lambda: ingester.health.report()["status"] == "ok", what="healthy before the outage")

        own_broker.kill()
        await wait_until(lambda: publisher.backlogged, timeout=30, what="a poll that overflows the producer")
        report = ingester.health.report()
        assert report["status"] == "degraded" and report["publisher"]["backlog"] > 0
        assert any("wait for room in the producer" in reason for reason in report["reasons"])
        await asyncio.sleep(INTERVAL_S + 1)  # a loop that was asleep when the backlog formed now waits too
        paused_at = polls()
        await asyncio.sleep(3 * INTERVAL_S)
        assert polls() == paused_at, "the sources were polled while values waited for room"
        assert metric("syi_messages_backlogged_total", service=SERVICE, topic="dl.apy") > backlogged

        await asyncio.to_thread(own_broker.start)
        await wait_until(lambda: publisher.backlogged == 0, timeout=60, what="the backlog drained")
        await wait_until(lambda: polls() > paused_at, timeout=30, what="polling to resume")
        await wait_until(lambda: ingester.health.report()["status"] == "ok", timeout=60, what="healthy again")
    assert publisher.flush(30) == 0  # (running() flushed on stop too)

    counts = publisher.counts
    # every value handed over was delivered, or replaced by a newer value of its key before delivery
    assert counts["published"] == counts["delivered"] + counts["conflated"]
    assert counts["failed"] == 0 and counts["rejected"] == 0 and counts["backlogged"] > 0
    await tail.wait_for(lambda messages: len(messages) >= counts["delivered"], what="every delivered value")
    assert len(tail.drain()) == counts["delivered"]  # and nothing twice
    tail.close()
