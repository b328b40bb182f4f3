"""The ingesters' one producer path (syi_shared.publisher) against real Kafka: a value counts as
delivered when Kafka acknowledged it; a full producer queue keeps the newest value per key and
drops nothing; a failed delivery is retried once a broker answers, counted once; a value Kafka
refuses for good is counted and shown until a newer value of its key is delivered.

The broker-down cases run on the fault suite's own broker (tests/faults/broker.py), SIGKILLed and
started again, so the session broker stays up for everything else."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syi_shared.health import broker_watch
from syi_shared.kafka import make_producer
from syi_shared.models import OrderBook, PriceTick
from syi_shared.publisher import Publisher
from syi_shared.settings import ServiceSettings
from syi_shared.timefmt import millis, time_text
from tests.faults.broker import OwnBroker
from tests.replay_server.harness import TopicTail, metric, wait_until
from tests.shared.examples import ORDERBOOK, PRICE

pytestmark = pytest.mark.integration

BASE_MS = millis(PRICE["event_time"])


def tick(n: int) -> PriceTick:
    """A valid cc.prices value whose event time carries `n` (so the topic shows which one arrived)."""
    return PriceTick.model_validate({**PRICE, "event_time": time_text(BASE_MS + n),
                                     "ingest_time": time_text(BASE_MS + n + 1)})


def number(message: dict[str, Any]) -> int:
    return millis(message["value"]["event_time"]) - BASE_MS


def service_name() -> str:
    return f"test-publisher-{uuid.uuid4().hex[:8]}"  # its own metric labels


def counted(name: str, service: str, **labels: str) -> float:
    return metric(name, service=service, **labels)


def ours(tail: TopicTail, keys: list[str]) -> dict[str, list[int]]:
    """The numbers delivered per key, in topic order."""
    found: dict[str, list[int]] = {key: [] for key in keys}
    for message in tail.drain():
        if message["key"] in found:
            found[message["key"]].append(number(message))
    return found


def test_a_value_counts_as_delivered_only_once_kafka_acknowledged_it(provisioned: ServiceSettings) -> None:
    service = service_name()
    publisher = Publisher(service, provisioned)
    tail = TopicTail(provisioned, ["cc.prices"])
    keys = [f"{service}-{n}" for n in range(3)]
    deliveries = [publisher.publish("cc.prices", tick(n), key=key) for n, key in enumerate(keys)]
    # queued is not delivered: linger.ms alone keeps them in the producer for a few ms
    assert [d.state for d in deliveries] == ["pending"] * 3
    assert counted("syi_messages_published_total", service, topic="cc.prices") == 3
    assert counted("syi_messages_delivered_total", service, topic="cc.prices") == 0
    assert publisher.flush(10) == 0
    assert [d.state for d in deliveries] == ["delivered"] * 3
    assert counted("syi_messages_delivered_total", service, topic="cc.prices") == 3
    assert publisher.counts == {"published": 3, "backlogged": 0, "delivered": 3, "failed": 0, "conflated": 0,
                                "rejected": 0}
    deadline = time.monotonic() + 20
    while any(not numbers for numbers in ours(tail, keys).values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ours(tail, keys) == {key: [n] for n, key in enumerate(keys)}
    assert publisher.check().status == "ok"
    tail.close()


def test_a_value_that_is_not_its_topics_model_is_refused_before_kafka(provisioned: ServiceSettings) -> None:
    publisher = Publisher(service_name(), provisioned)
    with pytest.raises(TypeError, match="cc.orderbook takes OrderBook, got PriceTick"):
        publisher.publish("cc.orderbook", tick(0))
    assert publisher.counts["published"] == 0


async def test_a_full_producer_queue_keeps_the_newest_value_per_key_and_pauses_until_there_is_room(
    provisioned: ServiceSettings,
) -> None:
    service = service_name()
    # one message fits, and it stays queued for a second (linger): every later value finds the queue full
    producer = make_producer(provisioned, **{"queue.buffering.max.messages": 1, "linger.ms": 1000})
    publisher = Publisher(service, producer=producer)
    tail = TopicTail(provisioned, ["cc.prices"])
    first, second = f"{service}-a", f"{service}-b"
    deliveries = [publisher.publish("cc.prices", tick(n), key=first) for n in range(10)]
    deliveries.append(publisher.publish("cc.prices", tick(100), key=second))  # waits behind the others
    assert [d.state for d in deliveries] == ["pending"] + ["conflated"] * 8 + ["pending", "pending"]
    assert publisher.backlogged == 2
    assert counted("syi_publish_backlog_messages", service) == 2
    assert counted("syi_messages_backlogged_total", service, topic="cc.prices") == 10
    assert counted("syi_messages_conflated_total", service, topic="cc.prices") == 8
    report = publisher.check()
    assert report.status == "degraded" and "2 value(s) wait for room in the producer" in report.reasons[0]

    await asyncio.wait_for(publisher.room(), 20)  # what a source awaits before polling again
    assert publisher.backlogged == 0 and counted("syi_publish_backlog_messages", service) == 0
    assert publisher.flush(10) == 0
    assert [d.state for d in deliveries] == ["delivered"] + ["conflated"] * 8 + ["delivered", "delivered"]
    await tail.wait_for(lambda _: sum(map(len, ours(tail, [first, second]).values())) >= 3, what="3 values")
    # the first value went out, then the newest of its key (never an older one after it); nothing else lost
    assert ours(tail, [first, second]) == {first: [0, 9], second: [100]}
    assert publisher.counts == {"published": 11, "backlogged": 10, "delivered": 3, "failed": 0, "conflated": 8,
                                "rejected": 0}
    assert publisher.check().status == "ok"
    tail.close()


def test_a_value_kafka_refuses_for_good_is_counted_and_shown_until_a_newer_value_of_its_key_is_delivered(
    provisioned: ServiceSettings,
) -> None:
    service = service_name()
    publisher = Publisher(service, producer=make_producer(provisioned, **{"message.max.bytes": 1000}))
    key = f"{service}-book"
    levels = 40
    huge = OrderBook.model_validate({**ORDERBOOK, "bids": [[0.9998 - i * 1e-4, 1000.0 + i] for i in range(levels)],
                                     "asks": [[0.9999 + i * 1e-4, 1000.0 + i] for i in range(levels)]})
    refused = publisher.publish("cc.orderbook", huge, key=key)
    assert refused.state == "rejected" and "too large" in (refused.error or "").lower()
    assert counted("syi_delivery_failures_total", service, topic="cc.orderbook", kind="MSG_SIZE_TOO_LARGE") == 1
    report = publisher.check()
    assert report.status == "degraded"
    assert any(f"1 value(s) rejected by Kafka, last cc.orderbook {key}" in reason for reason in report.reasons)
    assert publisher.backlogged == 0  # not retried: no retry can make it fit

    smaller = publisher.publish("cc.orderbook", OrderBook.model_validate(ORDERBOOK), key=key)
    assert publisher.flush(10) == 0 and smaller.state == "delivered"
    assert publisher.check().status == "ok"  # the key's newest value is in Kafka: nothing missing any more


# --------------------------------------------------------------------------- the broker away


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnBroker]:
    broker = OwnBroker(Path(tmp_path_factory.mktemp("publisher-broker"))).start()
    broker.provision()
    yield broker
    broker.stop()


def watched_publisher(broker: OwnBroker, service: str, **producer: Any) -> Publisher:
    """A publisher as the ingesters build it: its producer's errors and a metadata probe feed a BrokerWatch."""
    watch = broker_watch(["cc.prices"])
    watch.start_probe(broker.settings.kafka_config(), interval=0.5)
    # a short reconnect backoff: the test should not wait for librdkafka's 10 s maximum
    config = {"reconnect.backoff.max.ms": 500, **producer}
    publisher = Publisher(service, producer=make_producer(broker.settings, watch=watch, **config), watch=watch)
    warm = publisher.publish("cc.prices", tick(-1), key=f"{service}-warm")  # producer id, metadata
    assert publisher.flush(30) == 0 and warm.state == "delivered"
    return publisher


@pytest.mark.faults
@pytest.mark.timeout(240)
async def test_with_the_broker_down_a_full_buffer_loses_nothing_but_older_values_of_a_key(
    own_broker: OwnBroker,
) -> None:
    service = service_name()
    publisher = watched_publisher(own_broker, service, **{"queue.buffering.max.messages": 3})
    assert publisher.watch is not None
    tail = TopicTail(own_broker.settings, ["cc.prices"])
    keys = [f"{service}-{k}" for k in range(4)]
    own_broker.kill()
    total = 200
    for n in range(total):
        publisher.publish("cc.prices", tick(n), key=keys[n % len(keys)])
        if n % 20 == 0:
            publisher.pump()
    # 3 values in the producer, the newest of each key in the backlog; the source would be paused
    assert len(publisher.producer) == 3 and publisher.backlogged == len(keys)
    report = publisher.check()
    assert report.status == "degraded" and report.model_extra["publisher"]["backlog"] == len(keys)
    assert counted("syi_publish_backlog_messages", service) == len(keys)
    room = asyncio.create_task(publisher.room())
    await asyncio.sleep(1.0)
    assert not room.done()  # still waiting: no room while the broker is away

    await asyncio.to_thread(own_broker.start)
    await asyncio.wait_for(room, 60)
    assert await asyncio.to_thread(publisher.flush, 60) == 0
    newest = {key: max(n for n in range(total) if keys[n % len(keys)] == key) for key in keys}
    await tail.wait_for(lambda _: all(numbers and numbers[-1] == newest[key]
                                      for key, numbers in ours(tail, keys).items()), what="each key's newest value")
    delivered = ours(tail, keys)
    assert {key: numbers[-1] for key, numbers in delivered.items()} == newest
    for key, numbers in delivered.items():
        assert numbers == sorted(set(numbers)), f"{key}: out of order or twice: {numbers}"
    sent = sum(map(len, delivered.values()))
    assert sent == 3 + len(keys)  # what was in the producer, then each key's newest
    # every value handed over is accounted for: delivered or replaced by a newer value of its key
    counts = publisher.counts
    assert counts["published"] == total + 1 and counts["delivered"] == sent + 1  # + the warm-up value
    assert counts["conflated"] == total - sent == counted("syi_messages_conflated_total", service, topic="cc.prices")
    assert counts["failed"] == 0 and counts["rejected"] == 0
    assert counted("syi_messages_backlogged_total", service, topic="cc.prices") == total - 3
    assert publisher.check().status == "ok"
    publisher.watch.stop_probe()
    tail.close()


@pytest.mark.faults
@pytest.mark.timeout(240)
async def test_a_delivery_that_times_out_while_the_broker_is_down_is_retried_once_it_is_back_and_counted_once(
    own_broker: OwnBroker,
) -> None:
    service = service_name()
    publisher = watched_publisher(own_broker, service, **{"message.timeout.ms": 3000})
    assert publisher.watch is not None
    watch = publisher.watch
    tail = TopicTail(own_broker.settings, ["cc.prices"])
    key = f"{service}-k"
    own_broker.kill()
    await wait_until(lambda: not watch.reachable(time.time()), timeout=30, what="the watch to see the broker gone")
    delivery = publisher.publish("cc.prices", tick(7), key=key)

    def failed() -> float:
        publisher.pump()
        return counted("syi_delivery_failures_total", service, topic="cc.prices", kind="_MSG_TIMED_OUT")

    await wait_until(lambda: failed() == 1, timeout=30, what="the delivery to time out")
    assert delivery.state == "pending" and publisher.backlogged == 1  # back in the backlog, not forgotten
    assert any("wait for room" in reason for reason in publisher.check().reasons)
    for _ in range(20):  # while no broker answers it waits instead of timing out again and again
        publisher.pump()
        await asyncio.sleep(0.2)
    assert failed() == 1

    await asyncio.to_thread(own_broker.start)
    assert await asyncio.wait_for(publisher.settled(delivery), 60)
    await tail.wait_for(lambda _: ours(tail, [key])[key], what="the retried value")
    assert ours(tail, [key]) == {key: [7]}
    assert failed() == 1 and publisher.counts["failed"] == 1 and publisher.counts["delivered"] == 2  # + warm-up
    assert publisher.check().status == "ok"
    watch.stop_probe()
    tail.close()
