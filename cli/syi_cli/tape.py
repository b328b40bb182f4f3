"""Tapes (docs/topics.md, "Tapes"): JSON lines `{"topic": ..., "key": ..., "value": {...}}`.

Reading validates every line as the consumers validate a message (its topic's model with
the plausibility bounds, and the line's key against the value's) and reports the bad ones
by line number; `.gz` files are read and written transparently. `play_tape` produces a tape into
Kafka at N x the event-time pace or as fast as possible; `record_tape` writes topics back
into a tape.
"""

from __future__ import annotations

import gzip
import os
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson
from isal import igzip  # reads gzip with ISA-L: 2.5x zlib's speed on a long tape
from pydantic import BaseModel

from syi_shared.codec import DecodeError, validate_value
from syi_shared.kafka import base_config, make_producer
from syi_shared.serde import dumps
from syi_shared.settings import ServiceSettings
from syi_shared.timefmt import millis
from syi_shared.topics import TOPICS

Progress = Callable[[int], None]  # called with the number of lines handled so far


class TapeMessage(NamedTuple):  # a tuple: one is made per line of a tape of millions
    line: int  # 1-based line number: the tape's "position", the last tie-breaker of "latest as of t"
    topic: str
    key: str
    value: BaseModel


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@contextmanager
def open_binary(path: Path, mode: str = "rb") -> Iterator[IO[bytes]]:
    """A tape file, gzip or not. Written gzip carries no name or time, so output is reproducible."""
    path = Path(path)
    if path.suffix != ".gz":
        with open(path, mode) as handle:
            yield handle
    elif mode.startswith("r"):
        with igzip.open(path, mode) as handle:
            yield handle  # type: ignore[misc]
    else:
        with open(path, mode) as raw, gzip.GzipFile(filename="", mode=mode, fileobj=raw, mtime=0) as handle:
            yield handle  # type: ignore[misc]


def event_millis(value: BaseModel) -> int | None:
    """The time a message paces and filters by: inputs' event_time, outputs' bucket_end."""
    text = getattr(value, "event_time", None) or getattr(value, "bucket_end", None)
    return millis(text) if text else None


def parse_line(number: int, raw: bytes, only: Collection[str] | None = None) -> TapeMessage | BadLine | None:
    """One tape line -> message, reason it is invalid, or None (blank, or a topic not in `only`)."""
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None if not raw.strip() else BadLine(number, f"invalid JSON ({exc})")  # blank: skipped
    if not isinstance(line, dict) or not isinstance(line.get("topic"), str):
        return BadLine(number, 'expected an object {"topic": ..., "key": ..., "value": {...}}')
    name = line["topic"]
    if only is not None and name not in only:
        return None
    if name not in TOPICS:
        return BadLine(number, f"topic: unknown topic {name!r}")
    value = line.get("value")
    if not isinstance(value, dict):
        return BadLine(number, "value: expected a JSON object")
    key = line.get("key")
    try:
        # The consumers' own check (bounds and key included), so a tape computed in one
        # process and the same tape streamed through Kafka keep the same messages.
        model = validate_value(name, value, key)
    except DecodeError as exc:
        return BadLine(number, exc.reason)
    return TapeMessage(number, name, key, model)


@dataclass
class ReadProgress:
    """How far a `read_tape` got: bytes of the file (compressed, for .gz) and lines, updated
    every `READ_PROGRESS_EVERY` lines and at the end."""

    total_bytes: int = 0
    bytes_read: int = 0
    lines: int = 0
    done: bool = False


READ_PROGRESS_EVERY = 4096


def read_tape(path: Path, only: Collection[str] | None = None,
              progress: ReadProgress | None = None) -> Iterator[TapeMessage | BadLine]:
    """Every message of a tape in file order, with invalid lines as `BadLine`s, one line in
    memory at a time.

    `only`: keep these topics and ignore every other line's topic silently (the calculator
    ignores unknown topics); without it, a topic outside the registry is a bad line.
    `progress`: updated as the file is read (for a progress display).
    """
    path = Path(path)
    with open(path, "rb") as raw:
        if progress is not None:
            progress.total_bytes = os.fstat(raw.fileno()).st_size
        handle: IO[bytes] = igzip.GzipFile(fileobj=raw, mode="rb") if path.suffix == ".gz" else raw
        number = 0
        for number, line in enumerate(handle, start=1):
            if progress is not None and number % READ_PROGRESS_EVERY == 0:
                progress.bytes_read, progress.lines = raw.tell(), number
            item = parse_line(number, line, only)
            if item is not None:
                yield item
        if progress is not None:
            progress.bytes_read, progress.lines, progress.done = progress.total_bytes, number, True


def count_lines(path: Path) -> int:
    with open_binary(path) as handle:
        return sum(1 for _ in handle)


def tape_line(topic: str, key: str | None, value: Any) -> bytes:
    return orjson.dumps({"topic": topic, "key": key, "value": value})


@dataclass
class PlayResult:
    produced: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)
    invalid: list[BadLine] = field(default_factory=list)
    seconds: float = 0.0
    first_event_ms: int | None = None
    last_event_ms: int | None = None

    @property
    def rate(self) -> float:
        return self.produced / self.seconds if self.seconds > 0 else 0.0


def play_tape(
    path: Path,
    settings: ServiceSettings,
    speed: float | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    progress: Progress | None = None,
    on_invalid: Callable[[BadLine], None] | None = None,
    flush_timeout: float = 120.0,
    announce_progress: bool = False,
) -> PlayResult:
    """Produce every valid line to its topic in file order (key as in the file, value as
    `serde.dumps` of the validated model, which is the line's own bytes for a recorded tape).

    `speed`: None = as fast as possible; N = N x the pace of event time (a message waits until
    its event time, counted from the first message played, divided by N has elapsed).
    `start_ms`/`end_ms`: play only messages with start <= event time < end.
    `announce_progress`: also produce progress markers on `syi.progress` (docs/streaming.md),
    so the calculators close each bucket exactly when its inputs are all in, whatever the pace.
    Raises RuntimeError when Kafka did not accept every message.
    """
    if speed is not None and speed <= 0:
        raise ValueError("speed must be positive (or None for as fast as possible)")
    result = PlayResult()
    failures: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    producer = make_producer(settings)
    announcer = None
    if announce_progress:
        from syi_shared.streaming.progress import ProgressAnnouncer

        announcer = ProgressAnnouncer(settings, producer)
    began = time.monotonic()
    paced_from: int | None = None  # event time of the first message played
    for handled, item in enumerate(read_tape(path), start=1):
        if progress is not None and handled % 1000 == 0:
            progress(handled)
        if isinstance(item, BadLine):
            result.invalid.append(item)
            if on_invalid is not None:
                on_invalid(item)
            continue
        moment = event_millis(item.value)
        if moment is not None and ((start_ms is not None and moment < start_ms)
                                   or (end_ms is not None and moment >= end_ms)):
            continue
        if moment is not None:
            if speed is not None:
                paced_from = moment if paced_from is None else paced_from
                _wait_until(producer, began + (moment - paced_from) / 1000 / speed)
            result.first_event_ms = moment if result.first_event_ms is None else result.first_event_ms
            result.last_event_ms = max(moment, result.last_event_ms or moment)
            if announcer is not None:
                announcer.before(moment)
        _produce(producer, item.topic, item.key.encode(), dumps(item.value), delivered)
        result.produced += 1
        result.by_topic[item.topic] += 1
    remaining = producer.flush(flush_timeout)
    if announcer is not None and not remaining and not failures:
        announcer.finish(result.last_event_ms)
    result.seconds = time.monotonic() - began
    if remaining:
        raise RuntimeError(f"{remaining} messages still undelivered after {flush_timeout} s")
    if failures:
        hint = " (are the topics created? `syi topics create`)" if "UNKNOWN_TOPIC" in failures[0] else ""
        raise RuntimeError(f"{len(failures)} messages were not delivered, first: {failures[0]}{hint}")
    return result


def _wait_until(producer: Any, deadline: float) -> None:
    # Serve delivery callbacks while waiting instead of sleeping blind.
    while (left := deadline - time.monotonic()) > 0:
        producer.poll(min(left, 0.5))


def _produce(producer: Any, topic: str, key: bytes, value: bytes, on_delivery: Callable[..., None]) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
            producer.poll(0)
            return
        except BufferError:  # the local queue is full: let librdkafka send some first
            producer.poll(0.1)


@dataclass
class RecordResult:
    recorded: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)  # messages that are not JSON objects


def record_tape(
    topics: list[str],
    out: Path,
    settings: ServiceSettings,
    until_idle: float | None = None,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> RecordResult:
    """Write the messages of `topics` into a tape, ordered by event time (then topic order,
    producer timestamp, partition, offset: Kafka orders nothing across partitions).

    Without `until_idle`: everything currently in the topics (up to the high watermarks read
    at the start). With it: from the beginning, following new messages until none arrives
    for `until_idle` seconds (or Ctrl-C). Values are written as they are on Kafka (JSON);
    messages that are not JSON objects are skipped and listed in the result.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    unknown = [name for name in topics if name not in TOPICS and not name.endswith(".dlq")]
    if unknown:
        raise ValueError(f"unknown topics: {', '.join(unknown)}")
    consumer = Consumer({**base_config(settings), "group.id": "syi-tape-recorder", "enable.auto.commit": False,
                         "enable.partition.eof": True})
    rows: list[tuple[tuple[int, int, int, int, int], bytes]] = []
    result = RecordResult()
    order = {name: index for index, name in enumerate(topics)}
    try:
        metadata = consumer.list_topics(timeout=timeout)
        assignment, ends = [], {}
        for name in topics:
            if name not in metadata.topics or metadata.topics[name].error is not None:
                raise ValueError(f"topic {name!r} does not exist on {settings.kafka_config()['bootstrap.servers']}")
            for partition in metadata.topics[name].partitions:
                assignment.append(TopicPartition(name, partition, OFFSET_BEGINNING))
                low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=timeout)
                ends[(name, partition)] = (low, high)
        consumer.assign(assignment)
        # First catch up with the high watermarks read now (snapshot mode stops there); follow
        # mode then goes on until nothing new arrives for `until_idle` seconds.
        pending = {place for place, (low, high) in ends.items() if high > low}
        deadline = time.monotonic() + timeout
        last_message = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if pending and now > deadline:
                    raise TimeoutError(f"could not read to the end of {sorted(pending)} in {timeout} s")
                if not pending and (until_idle is None or now - last_message > until_idle):
                    break
                message = consumer.poll(0.2)
                if message is None:
                    continue
                place = (message.topic(), message.partition())
                error = message.error()
                at_end = error is not None and error.code() == KafkaError._PARTITION_EOF
                if error is not None and not at_end:
                    continue
                if error is None:
                    last_message = time.monotonic()
                    at_end = message.offset() + 1 >= ends.get(place, (0, 0))[1]
                if at_end and place in pending:
                    pending.discard(place)
                    last_message = time.monotonic()  # idleness counts from catching up
                if error is not None:
                    continue
                row = _row(message, order)
                if row is None:
                    result.skipped.append(f"{place[0]}[{place[1]}]@{message.offset()}: not a JSON object")
                    continue
                rows.append(row)
                if progress is not None and len(rows) % 1000 == 0:
                    progress(len(rows))
        except KeyboardInterrupt:  # Ctrl-C ends a follow: keep what was recorded
            pass
    finally:
        consumer.close()
    rows.sort(key=lambda row: row[0])
    with open_binary(out, "wb") as handle:
        for _, line in rows:
            handle.write(line + b"\n")
    result.recorded = len(rows)
    result.by_topic.update(orjson.loads(line)["topic"] for _, line in rows)
    return result


def _row(message: Any, order: dict[str, int]) -> tuple[tuple[int, int, int, int, int], bytes] | None:
    raw = message.value()
    try:
        value = orjson.loads(raw) if raw is not None else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    text = value.get("event_time") or value.get("bucket_end")
    try:
        moment = millis(text) if text else 0
    except ValueError:
        moment = 0
    key = message.key()
    sort_key = (moment, order[message.topic()], message.timestamp()[1], message.partition(), message.offset())
    return sort_key, tape_line(message.topic(), key.decode() if key is not None else None, value)
