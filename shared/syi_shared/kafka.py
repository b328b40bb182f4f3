"""confluent-kafka factories: idempotent producers (acks=all), consumers with explicit commits.

`watch=` sends a client's errors to the service's `BrokerWatch` (syi_shared.broker_watch), so
"all brokers down" is known at once (docs/operations.md).
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from syi_shared.broker_watch import BrokerWatch
from syi_shared.settings import ServiceSettings

PRODUCER_DEFAULTS = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "compression.type": "lz4",
}

CONSUMER_DEFAULTS = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    # librdkafka's default, said aloud: the calculators publish in transactions (docs/topics.md)
    "isolation.level": "read_committed",
}


def base_config(settings: ServiceSettings | None = None) -> dict[str, Any]:
    return (settings or ServiceSettings()).kafka_config()


def make_producer(settings: ServiceSettings | None = None, watch: BrokerWatch | None = None,
                  **overrides: Any) -> Producer:
    watched = watch.client_config() if watch is not None else {}
    config = {**base_config(settings), **PRODUCER_DEFAULTS, **watched, **overrides}
    return Producer(config)


def make_consumer(group_id: str, settings: ServiceSettings | None = None, watch: BrokerWatch | None = None,
                  **overrides: Any) -> Consumer:
    """A group consumer: offsets are stored with `store_offsets(msg)` and committed explicitly."""
    watched = watch.client_config() if watch is not None else {}
    config = {**base_config(settings), **CONSUMER_DEFAULTS, "group.id": group_id, **watched, **overrides}
    return Consumer(config)


def rewind_to_committed(consumer: Consumer, timeout: float = 10.0) -> list[TopicPartition]:
    """Seek every assigned partition back to its committed offset (its beginning when none was
    committed), so messages read but not yet written are read again instead of skipped."""
    assignment = consumer.assignment()
    if not assignment:
        return []
    positions = []
    for committed in consumer.committed(assignment, timeout=timeout):
        offset = committed.offset if committed.offset >= 0 else OFFSET_BEGINNING
        position = TopicPartition(committed.topic, committed.partition, offset)
        consumer.seek(position)
        positions.append(position)
    return positions


def read_to_end(
    topics: list[str], settings: ServiceSettings | None = None, timeout: float = 30.0, since_ms: int | None = None
) -> list[Any]:
    """Every committed message currently in `topics`, partition by partition, without joining a group.

    Reads with `read_committed` and stops at each partition's end as the broker reports it
    (partition EOF: the last stable offset), or at the high watermark read at the start when
    that comes first. Not at `high − 1`: transaction commit markers occupy offsets and are
    never delivered, so the last message may sit below them (for recorders, checks and tests).
    `since_ms`: only the messages appended at/after this Kafka timestamp.
    """
    consumer = Consumer({
        **base_config(settings), "group.id": "syi-reader", "enable.auto.commit": False,
        "isolation.level": "read_committed", "enable.partition.eof": True,
    })
    try:
        metadata = consumer.list_topics(timeout=timeout)
        wanted: dict[tuple[str, int], int] = {}
        assignment = []
        for name in topics:
            for partition in metadata.topics[name].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=timeout)
                if since_ms is not None:
                    at = TopicPartition(name, partition, since_ms)
                    first = consumer.offsets_for_times([at], timeout=timeout)[0].offset
                    low = first if first >= 0 else high  # -1: nothing that recent
                if high > low:
                    wanted[(name, partition)] = high
                    assignment.append(TopicPartition(name, partition, low))
        consumer.assign(assignment)
        messages = []
        deadline = time.monotonic() + timeout
        while wanted and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            place = (message.topic(), message.partition())
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    wanted.pop(place, None)  # everything committed so far has been read
                continue
            if place not in wanted:
                continue
            messages.append(message)
            if message.offset() + 1 >= wanted[place]:
                del wanted[place]
        if wanted:
            raise TimeoutError(f"could not read to the end of {sorted(wanted)} in {timeout} s")
        return messages
    finally:
        consumer.close()
