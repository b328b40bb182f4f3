"""Against the real broker: the last committed record of each partition, below commit markers,
aborted records and a still open transaction."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from syi_shared.kafka import base_config, make_producer
from syi_shared.last_committed import last_committed

pytestmark = pytest.mark.integration


def fresh_topic(settings, partitions: int) -> str:
    name = f"test.tail.{uuid.uuid4().hex[:10]}"
    admin = AdminClient(base_config(settings))  # kept alive until the topic exists
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return name


def test_the_last_committed_record_below_markers_aborted_records_and_an_open_transaction(kafka_settings):
    name = fresh_topic(kafka_settings, 3)
    producer = make_producer(kafka_settings, **{"transactional.id": f"test-{name}"})
    producer.init_transactions(30)

    def transaction(partition: int, values: list[bytes], end: str) -> None:
        producer.begin_transaction()
        for value in values:
            producer.produce(name, key=b"k", value=value, partition=partition)
        producer.flush(30)  # in the log before the end: an aborted record takes its offsets
        if end == "commit":
            producer.commit_transaction(30)
        elif end == "abort":
            producer.abort_transaction(30)

    transaction(0, [b"a0", b"a1", b"a2"], "commit")
    transaction(0, [b"b0"], "commit")
    transaction(0, [b"x0", b"x1", b"x2", b"x3", b"x4"], "abort")  # wider than the first window
    transaction(1, [b"y0", b"y1"], "abort")  # partition 1: nothing committed; 2: empty
    transaction(0, [b"open"], "open")

    # a window of 2 offsets holds only aborted records: it widens until it reaches b0
    found = last_committed(name, [0, 1, 2], kafka_settings, timeout=30, window=2)
    assert {p: m.value() for p, m in found.items()} == {0: b"b0"}
    assert found[0].offset() == 4, "a0 a1 a2 and their commit marker come before b0"

    producer.commit_transaction(30)
    found = last_committed(name, [0, 1, 2], kafka_settings, timeout=30)
    assert {p: m.value() for p, m in found.items()} == {0: b"open"}


def test_a_topic_without_transactions_ends_at_its_last_message(kafka_settings):
    name = fresh_topic(kafka_settings, 1)
    producer = make_producer(kafka_settings)
    for value in (b"p0", b"p1", b"p2"):
        producer.produce(name, key=b"k", value=value)
    assert producer.flush(30) == 0
    found = last_committed(name, [0], kafka_settings, timeout=30)
    assert found[0].value() == b"p2" and found[0].offset() == 2
