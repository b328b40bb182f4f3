"""Producing test records and watching a consumer group reach the end of its topics."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from confluent_kafka import Consumer, KafkaException, TopicPartition
from pydantic import BaseModel

from syi_shared import serde
from syi_shared.kafka import base_config, make_producer, read_to_end
from syi_shared.last_committed import last_committed
from syi_shared.settings import ServiceSettings

T = TypeVar("T")

STORED_TOPICS = ["cc.prices", "cc.orderbook", "syi.calculated"]


def produce(
    settings: ServiceSettings, items: Iterable[tuple[str, BaseModel | bytes, bytes]]
) -> list[tuple[str, int, int]]:
    """(topic, model or raw bytes, key) → Kafka, flushed; returns where each item landed
    (topic, partition, offset), in the order of `items`."""
    producer = make_producer(settings)
    landed: dict[int, tuple[str, int, int]] = {}

    def delivered(index: int, error, message) -> None:
        assert error is None, error
        landed[index] = (message.topic(), message.partition(), message.offset())

    for index, (topic, value, key) in enumerate(items):
        raw = value if isinstance(value, bytes) else serde.dumps(value)
        producer.produce(topic, key=key, value=raw, on_delivery=functools.partial(delivered, index))
    assert producer.flush(30) == 0
    return [landed[index] for index in sorted(landed)]


def _partitions(consumer: Consumer, topics: list[str]) -> list[TopicPartition]:
    metadata = consumer.list_topics(timeout=30)
    return [TopicPartition(t, p) for t in topics for p in metadata.topics[t].partitions]


def _retrying(call: Callable[[], T], timeout: float = 60.0) -> T:
    """A fresh broker answers "not leader" / "coordinator loading" for a while: ask again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def watermarks(settings: ServiceSettings, topics: list[str] = STORED_TOPICS) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) → (low, end) offsets. `end` is the offset after the last committed record,
    where a group that stored everything commits: commit markers take offsets, so it is not the high
    watermark; `end` is `low` where the partition holds no committed record."""
    consumer = Consumer({**base_config(settings), "group.id": "syi-test-ends"})
    try:
        partitions = _partitions(consumer, topics)
        lows = _retrying(lambda: {
            (tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=30)[0] for tp in partitions
        })
    finally:
        consumer.close()
    marks = {place: (low, low) for place, low in lows.items()}
    for topic in topics:
        found = last_committed(topic, [p for t, p in lows if t == topic], settings, timeout=30)
        marks.update({(topic, p): (lows[(topic, p)], message.offset() + 1) for p, message in found.items()})
    return marks


def message_count(settings: ServiceSettings, topics: list[str] = STORED_TOPICS) -> int:
    """The committed messages in `topics` (offsets count commit markers and aborted records too)."""
    return len(read_to_end(topics, settings))


def committed_offsets(
    settings: ServiceSettings, group: str, topics: list[str] = STORED_TOPICS
) -> dict[tuple[str, int], int]:
    """The group's committed offsets (-1001 where it committed nothing)."""
    consumer = Consumer({**base_config(settings), "group.id": group})
    try:
        partitions = _partitions(consumer, topics)
        committed = _retrying(lambda: consumer.committed(partitions, timeout=30))
        return {(tp.topic, tp.partition): tp.offset for tp in committed}
    finally:
        consumer.close()


def caught_up(settings: ServiceSettings, group: str, marks: dict[tuple[str, int], tuple[int, int]]) -> bool:
    """Has `group` committed every partition up to the ends in `marks`?"""
    committed = committed_offsets(settings, group)
    return all(end == low or committed.get(place, -1) >= end for place, (low, end) in marks.items())


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
