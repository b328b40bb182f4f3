"""One Kafka consumer over every input partition (and `syi.progress`), from the positions the
restore found. Bytewax keeps no resume state for it: the checkpoint in Kafka is the only one.

Its first batch announces where each partition starts (`PartitionStart`), so the clock can
judge progress markers. Reads `read_committed` (ray.calculated is written in transactions).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import Consumer, KafkaError, TopicPartition

from syi_shared.consumer_lag import record_consumer_lag
from syi_shared.streaming.clock import PartitionId
from syi_shared.streaming.step import PartitionStart

PART = "inputs"  # the source's one partition
LAG_EVERY_S = 5.0


class InputPartition(StatefulSourcePartition[Any, None]):
    def __init__(self, config: dict[str, Any], positions: dict[PartitionId, int], tail: bool, batch_size: int,
                 stop: threading.Event, group: str) -> None:
        self.consumer = Consumer(config)
        self.consumer.assign([TopicPartition(topic, partition, offset) for (topic, partition), offset in positions.items()])
        self.starts: list[Any] | None = [PartitionStart(t, p, offset) for (t, p), offset in positions.items()]
        self.places = set(positions)
        self.ended: set[PartitionId] = set()
        self.tail, self.batch_size, self.stop, self.group = tail, batch_size, stop, group
        self.lag_at = 0.0

    def next_batch(self) -> list[Any]:
        if self.stop.is_set():
            raise StopIteration  # a requested stop: end the input cleanly
        if self.starts is not None:
            starts, self.starts = self.starts, None
            return starts
        messages = self.consumer.consume(self.batch_size, timeout=0.1)
        batch = []
        for message in messages:
            error = message.error()
            place = (message.topic(), message.partition())
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                self.ended.add(place)
                continue
            self.ended.discard(place)
            batch.append(message)  # errors too: the decoder logs them
        if not self.tail and self.ended >= self.places:
            raise StopIteration  # bounded input: every partition read to its end
        self._lag()
        return batch

    def _lag(self) -> None:
        now = time.monotonic()
        if now - self.lag_at >= LAG_EVERY_S:
            self.lag_at = now
            record_consumer_lag(self.consumer, self.group, self.consumer.position(self.consumer.assignment()), cached=True)

    def next_awake(self) -> datetime | None:
        return None  # consume() waits up to 0.1 s itself

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self.consumer.close()


class InputSource(FixedPartitionedSource[Any, None]):
    def __init__(self, config: dict[str, Any], positions: dict[PartitionId, int], tail: bool, batch_size: int,
                 stop: threading.Event, group: str) -> None:
        self.config = {
            **config, "group.id": group, "enable.auto.commit": False, "isolation.level": "read_committed",
            "enable.partition.eof": not tail,
        }
        self.positions, self.tail, self.batch_size, self.stop, self.group = positions, tail, batch_size, stop, group

    def list_parts(self) -> list[str]:
        return [PART]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> InputPartition:
        return InputPartition(self.config, self.positions, self.tail, self.batch_size, self.stop, self.group)
