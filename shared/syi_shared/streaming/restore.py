"""Where a calculator (re)starts, from Kafka alone (docs/streaming.md, "Exactly once").

1. The newest checkpoint snapshot of this instance on its state topic (`syi_shared.checkpoint`)
   gives the clock and engine state at some close, and the input positions then.
2. The inputs are re-read up to each later close mark's positions, and those buckets are closed
   again silently: the same code rebuilds the same state, nothing is published.
3. The output topics' committed tails says what is already published: buckets up to its newest
   `bucket_end` are never published again (even when the state topic was lost), and the audit
   chain continues from its last `cid`.

The same replay recomputes published records for `syi verify --recompute`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from syi_shared.checkpoint import CloseMark, read_restore
from syi_shared.last_committed import last_committed
from syi_shared.logs import get_logger
from syi_shared.settings import ServiceSettings
from syi_shared.streaming.clock import PartitionId
from syi_shared.streaming.step import CalcStep, PartitionStart, Resume
from syi_shared.timefmt import millis, time_text

Positions = dict[str, dict[str, int]]


def reader(settings: ServiceSettings, **overrides: Any) -> Consumer:
    """A consumer that reads committed data only and reports partition ends, without a group."""
    return Consumer({
        **settings.kafka_config(), "group.id": "syi-restore", "enable.auto.commit": False,
        "isolation.level": "read_committed", "enable.partition.eof": True, **overrides,
    })


@dataclass(frozen=True)
class Published:
    """What the output topics already hold for this run."""

    upto_ms: int | None  # newest bucket_end on any output topic
    last_cid: str | None  # the chain tip of the chained topic (syi.calculated)


def published(settings: ServiceSettings, output_topics: Iterable[str], chain_topic: str | None,
              since_ms: int | None) -> Published:
    upto: int | None = None
    last_cid: str | None = None
    consumer = reader(settings)
    try:
        partitions = {topic: list(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
                      for topic in output_topics}
    finally:
        consumer.close()
    for topic in output_topics:
        for partition, message in last_committed(topic, partitions[topic], settings).items():
            if since_ms is not None and message.timestamp()[1] < since_ms:
                continue  # before this run's start: not this run's output
            record = orjson.loads(message.value())
            bucket = millis(record["bucket_end"])
            if record.get("revision", 0) >= 1:
                # A restatement of an older bucket may come last: publishing stopped at the
                # newest first revision before it (docs/topics.md, "Revisions").
                bucket = max(bucket, newest_bucket(settings, topic, partition, message.offset(), since_ms) or bucket)
            upto = bucket if upto is None else max(upto, bucket)
            if topic == chain_topic:
                last_cid = record.get("cid")
    return Published(upto, last_cid)


def newest_bucket(settings: ServiceSettings, topic: str, partition: int, end: int, since_ms: int | None,
                  timeout: float = 30.0) -> int | None:
    """The newest bucket_end among the committed records below offset `end`, reading back in
    widening windows until one holds a revision 0 (restatements are of older buckets, so the
    newest bucket is the newest revision 0's)."""
    consumer = reader(settings)
    deadline = time.monotonic() + timeout
    try:
        low, _high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        upper, span, newest = end, 64, None
        while upper > low:
            start = max(low, upper - span)
            consumer.assign([TopicPartition(topic, partition, start)])
            first_revision_seen = before_run = False
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"could not read {topic}/{partition} back from {end} in time")
                message = consumer.poll(0.2)
                if message is None:
                    continue
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        break
                    continue
                if message.offset() >= upper:
                    break
                if since_ms is not None and message.timestamp()[1] < since_ms:
                    before_run = True  # another run's: what lies further back is not this run's either
                    continue
                record = orjson.loads(message.value())
                bucket = millis(record["bucket_end"])
                newest = bucket if newest is None else max(newest, bucket)
                first_revision_seen = first_revision_seen or record.get("revision", 0) == 0
            if first_revision_seen or before_run:
                return newest
            upper, span = start, span * 8
        return newest
    finally:
        consumer.close()


class InputReplay:
    """Re-reads input partitions from given positions up to later ones, feeding a silent step."""

    def __init__(self, settings: ServiceSettings, start: dict[PartitionId, int], decode: Callable[[Any], list[Any]],
                 timeout: float = 60.0) -> None:
        self.consumer = reader(settings)
        self.position = dict(start)
        self.decode = decode
        self.timeout = timeout
        self.held: dict[PartitionId, deque[Message]] = {place: deque() for place in start}
        self.ended: set[PartitionId] = set()
        self.consumer.assign([TopicPartition(topic, partition, offset) for (topic, partition), offset in start.items()])

    def starts(self) -> list[PartitionStart]:
        return [PartitionStart(topic, partition, offset) for (topic, partition), offset in self.position.items()]

    def read_to(self, targets: Positions) -> list[Any]:
        """Every item below `targets` (next offsets) not fed yet, decoded, in partition order.
        Partitions already at their target are paused, so reading ahead stays small."""
        wanted = {
            (topic, int(partition)): offset
            for topic, partitions in targets.items()
            for partition, offset in partitions.items()
            if (topic, int(partition)) in self.position
        }
        items: list[Any] = []
        for place, target in wanted.items():
            held = self.held[place]
            while held and held[0].offset() < target:
                self._feed(held.popleft(), items)
        self._pause_done(wanted)
        deadline = time.monotonic() + self.timeout
        while any(self._missing(place, target) for place, target in wanted.items()):
            if time.monotonic() > deadline:
                missing = {f"{t}/{p}": (self.position[(t, p)], o) for (t, p), o in wanted.items() if self._missing((t, p), o)}
                raise TimeoutError(f"inputs not readable up to the recorded close: {missing} (position, target)")
            message = self.consumer.poll(0.2)
            if message is None:
                continue
            place = (message.topic(), message.partition())
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    self.ended.add(place)
                continue
            if place not in self.position or message.offset() < self.position[place]:
                continue
            self.ended.discard(place)
            if not self.held[place] and message.offset() < wanted.get(place, -1):
                self._feed(message, items)
            else:
                self.held[place].append(message)  # beyond this close: kept for the next
        return items

    def _feed(self, message: Message, items: list[Any]) -> None:
        items.extend(self.decode(message))
        self.position[(message.topic(), message.partition())] = message.offset() + 1

    def _pause_done(self, wanted: dict[PartitionId, int]) -> None:
        done, todo = [], []
        for place in self.position:
            target = wanted.get(place)
            needs = target is not None and self.position[place] < target and not self.held[place]
            (todo if needs else done).append(TopicPartition(place[0], place[1]))
        if done:
            self.consumer.pause(done)
        if todo:
            self.consumer.resume(todo)

    def _missing(self, place: PartitionId, target: int) -> bool:
        # At the partition's end below the target: what is missing was deleted (retention) or
        # aborted; nothing more can be read.
        return self.position[place] < target and not self.held[place] and place not in self.ended

    def close(self) -> None:
        self.consumer.close()


def replay_closes(step: CalcStep, replay: InputReplay, closes: list[CloseMark], now: float,
                  until_ms: int | None = None, on_close: Callable[[int], None] | None = None) -> None:
    """Close every recorded bucket again at the positions it closed at, silently."""
    step.silent = True
    try:
        step.replay(replay.starts(), now)
        for mark in closes:
            if until_ms is not None and mark.bucket_end_ms > until_ms:
                break
            step.replay(replay.read_to(mark.input_offsets), now)
            step.close(mark.bucket_end_ms, now)
            if on_close is not None:
                on_close(mark.bucket_end_ms)
    finally:
        step.silent = False


def start_positions(settings: ServiceSettings, partitions: Iterable[PartitionId], known: Positions,
                    since_ms: int | None, timeout: float = 30.0) -> dict[PartitionId, int]:
    """Per partition: the checkpoint's position, else the first offset at/after `since_ms`, else
    the beginning."""
    consumer = reader(settings)
    try:
        positions: dict[PartitionId, int] = {}
        for topic, partition in partitions:
            offset = known.get(topic, {}).get(str(partition))
            if offset is None and since_ms is not None:
                # The end is read before the lookup: when nothing that recent is there yet, the
                # start is the end as it was before the lookup. Read after it, the end would skip
                # what a producer appended in between (the first minute's APYs, in a kill campaign).
                end = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout, cached=False)[1]
                found = consumer.offsets_for_times([TopicPartition(topic, partition, since_ms)], timeout=timeout)[0]
                offset = found.offset if found.offset >= 0 else end
            if offset is None:
                offset = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)[0]
            positions[(topic, partition)] = offset
        return positions
    finally:
        consumer.close()


def restore(settings: ServiceSettings, make_step: Callable[[Resume], CalcStep], state_topic: str, instance: str,
            partitions: Iterable[PartitionId], decode: Callable[[Any], list[Any]], output_topics: Iterable[str],
            chain_topic: str | None, since_ms: int | None) -> tuple[CalcStep, dict[PartitionId, int]]:
    """The step as it was at the last committed close, and where each input resumes."""
    log = get_logger()
    found = read_restore(settings, state_topic, instance, since_ms=since_ms)
    tail = published(settings, output_topics, chain_topic, since_ms)
    checkpoint = found.checkpoint
    resume = Resume(
        clock=checkpoint.clock if checkpoint else None,
        calculator=checkpoint.calculator if checkpoint else None,
        published_upto_ms=tail.upto_ms, last_cid=tail.last_cid,
    )
    step = make_step(resume)
    known = checkpoint.input_offsets if checkpoint else {}
    positions = start_positions(settings, partitions, known, since_ms)
    if checkpoint is not None and found.closes:
        replay = InputReplay(settings, positions, decode)
        try:
            replay_closes(step, replay, found.closes, time.time())
            positions = dict(replay.position)
        finally:
            replay.close()
    if checkpoint is not None:
        step.calculator.continue_chain(tail.last_cid)
        last = step.clock.state.last_closed_ms
        step.metrics.last_bucket_ms = last
        if last is not None:
            step.health.resumed(last)
        log.info("resumed", checkpoint_bucket=_text(checkpoint.bucket_end_ms), closes_replayed=len(found.closes),
                 last_closed_bucket=_text(last), published_upto=_text(tail.upto_ms))
    elif tail.upto_ms is not None:
        log.warning("no_checkpoint", published_upto=_text(tail.upto_ms),
                    note="recomputing from the inputs; buckets already on the output topic are not published again")
    return step, positions


def _text(ms: int | None) -> str | None:
    return time_text(ms) if ms is not None else None

