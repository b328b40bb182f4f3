"""BrokerWatch: a service knows at once when Kafka is unreachable (error callback, metadata
probe), reports it in health once the outage outlasts the grace, and sees the cluster back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from syi_shared.broker_watch import BrokerWatch
from tests.faults.broker import OwnBroker


def test_an_all_brokers_down_error_is_unreachable_at_once_and_a_health_reason_after_the_grace() -> None:
    watch = BrokerWatch(grace_s=15.0)
    watch.on_error(KafkaError(KafkaError._MSG_TIMED_OUT), now=100.0)  # one request: not an outage
    assert watch.reachable(100.0)
    watch.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"), now=100.0)
    assert not watch.reachable(100.0)
    assert watch.reasons(114.0) == [] and watch.state(114.0) == "reachable"  # not yet news
    assert watch.reasons(115.0)[0].startswith("kafka: no broker reachable for 15 s")
    assert watch.state(115.0) == "down"
    watch.probed({}, now=120.0)  # the cluster answered again
    assert watch.reachable(120.0) and watch.reasons(120.0) == []


def test_a_partition_without_a_leader_for_the_grace_is_a_health_reason() -> None:
    watch = BrokerWatch(["cc.prices"], grace_s=15.0)
    watch.probed({("cc.prices", 0): 1, ("cc.prices", 1): -1}, now=10.0)
    assert watch.reasons(20.0) == []
    assert watch.reasons(25.0) == ["kafka: cc.prices/1 has had no leader for 15 s"]
    watch.probed({("cc.prices", 0): 1, ("cc.prices", 1): 2}, now=26.0)
    assert watch.reasons(40.0) == []


def test_a_failed_probe_counts_as_unreachable() -> None:
    watch = BrokerWatch()

    def refused(timeout: float) -> None:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "connection refused"))

    watch.probe_once(refused, timeout=1.0)
    assert not watch.reachable(time.time())


def wait_until(check, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


@pytest.mark.integration
def test_a_killed_broker_is_seen_within_seconds_and_its_return_too(tmp_path: Path) -> None:
    broker = OwnBroker(tmp_path)
    watch = BrokerWatch(grace_s=15.0)
    try:
        broker.start()
        watch.start_probe(broker.settings.kafka_config(), interval=1.0)
        wait_until(lambda: watch.reachable(time.time()), 20)
        broker.kill()
        assert wait_until(lambda: not watch.reachable(time.time()), 15) < 10
        assert wait_until(lambda: watch.state(time.time()) == "down", 30) < 25
        broker.start()
        wait_until(lambda: watch.reachable(time.time()) and watch.reasons(time.time()) == [], 30)
    finally:
        watch.stop_probe()
        broker.stop()
