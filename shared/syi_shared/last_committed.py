"""The last committed record of each partition: where a reader of "the latest value" starts.

The calculators publish in Kafka transactions: commit markers occupy offsets and aborted
records stay in the log, so the last record is not at `high − 1` (docs/topics.md, "Reading
the topics"). This reads each partition's tail with `read_committed` up to partition EOF (the
last stable offset), from a window below the end that widens until it holds a committed
record or reaches the start of the log.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from syi_shared.kafka import base_config
from syi_shared.settings import ServiceSettings

WINDOW = 64  # offsets read below the end at first: a few transactions of the widest topic
WIDEN = 8  # the window's growth when it held only aborted records and markers


def last_committed(
    topic: str,
    partitions: Iterable[int],
    settings: ServiceSettings | None = None,
    timeout: float = 30.0,
    window: int = WINDOW,
) -> dict[int, Any]:
    """partition -> its last committed message (a confluent-kafka Message); a partition holding
    no committed record is absent. Assign-only: joins no group, commits nothing."""
    consumer = Consumer({
        **base_config(settings), "group.id": "syi-tail-reader", "enable.auto.commit": False,
        "isolation.level": "read_committed", "enable.partition.eof": True,
        "auto.offset.reset": "earliest",  # a start that retention removed meanwhile: the log start
    })
    deadline = time.monotonic() + timeout
    found: dict[int, Any] = {}
    try:
        spans = {partition: window for partition in partitions}
        while spans:
            starts, bottom = {}, {}
            for partition, span in spans.items():
                # `high` is the last stable offset for a read_committed client
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
                if high > low:
                    starts[partition] = max(low, high - span)
                    bottom[partition] = starts[partition] == low
            found.update(_read_tails(consumer, topic, starts, deadline))
            spans = {p: spans[p] * WIDEN for p in starts if p not in found and not bottom[p]}
        return found
    finally:
        consumer.close()


def _read_tails(consumer: Consumer, topic: str, starts: dict[int, int], deadline: float) -> dict[int, Any]:
    """Read each partition from its start to EOF; the last message of each that had one."""
    if not starts:
        return {}
    consumer.assign([TopicPartition(topic, partition, start) for partition, start in starts.items()])
    pending, last = set(starts), {}
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not read to the end of {topic} partitions {sorted(pending)}")
        message = consumer.poll(0.2)
        if message is None or message.partition() not in starts:
            continue
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                pending.discard(message.partition())
            elif error.fatal() or not error.retriable():
                raise KafkaException(error)
            continue
        if message.offset() >= starts[message.partition()]:
            last[message.partition()] = message
    consumer.unassign()
    return last
