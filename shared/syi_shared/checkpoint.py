"""The calculators' checkpoint in Kafka (docs/streaming.md): the records of a state topic and
reading them back to resume.

A state topic (`state.<service>`, `topics.STATE_TOPICS`, one partition) holds, keyed by instance id:
* snapshot records: the instance's full state (engine, bucket clock, input positions) as JSON
  text, sliced in chunks under the topic's `max.message.bytes`, written in a transaction of its own;
* close records: one per closed bucket, in that bucket's transaction: the `input_offsets` at the
  close and how many records it published.

A restore loads the newest complete snapshot, then re-reads the inputs up to each later close
mark. Versioned JSON, no pickle: an older snapshot is upgraded by `migrate`, step by step
(`MIGRATIONS`); tests/fixtures/checkpoints keeps one of every version, which must keep loading.
Neither Bytewax nor a producer here: the calculators' sink produces what `snapshot_records`
and `close_record` return, under the instance id as key.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition
from pydantic import ValidationError

from syi_shared.kafka import base_config
from syi_shared.logs import get_logger
from syi_shared.models import StateRecord, validation_reason
from syi_shared.settings import ServiceSettings
from syi_shared.timefmt import millis, time_text

SCHEMA_VERSION = 1
MAX_CHUNK_CHARS = 512 * 1024  # of JSON text per snapshot record; well under max.message.bytes
# A whole record must also fit the producer's message.max.bytes (1 000 000): escaping a slice
# of JSON text inside JSON doubles its quotes, and non-ASCII text takes up to 4 bytes a character,
# so a slice that would exceed this is halved until it fits.
MAX_RECORD_BYTES = 900 * 1024
FIRST_WINDOW = 256  # offsets read back from the end first; each further window is WIDEN times wider
WIDEN = 4

PAYLOAD_FIELDS = ("schema_version", "service", "instance", "bucket_end_ms", "input_offsets", "clock", "calculator")

# Upgrades of a snapshot's parsed JSON: version n -> n + 1 (each sets "schema_version" to n + 1).
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}
# Upgrades of a raw record (the envelope of a chunk, or a close mark), applied before validation;
# a version without a step here changed the snapshot only (its records read as they are).
RECORD_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


class CheckpointError(Exception):
    """A state record or snapshot that cannot be read: corrupt, incomplete or of a newer format."""


@dataclass(frozen=True)
class Checkpoint:
    service: str  # "ray-calc" | "syi-calc"
    instance: str  # the instance id (also the Kafka key of its state records)
    bucket_end_ms: int | None  # last closed bucket the state includes (None: nothing closed yet)
    input_offsets: dict[str, dict[str, int]]  # next offset per input partition at that point
    clock: dict[str, Any]  # the bucket clock's state, JSON-able
    calculator: dict[str, Any]  # the engine's state, JSON-able
    schema_version: int = SCHEMA_VERSION

    def payload(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "service": self.service,
            "instance": self.instance,
            "bucket_end_ms": self.bucket_end_ms,
            "input_offsets": self.input_offsets,
            "clock": self.clock,
            "calculator": self.calculator,
        }


@dataclass(frozen=True)
class CloseMark:
    service: str
    instance: str
    bucket_end_ms: int
    input_offsets: dict[str, dict[str, int]]
    outputs: int  # records published for the bucket (0 allowed)


@dataclass(frozen=True)
class Restore:
    checkpoint: Checkpoint | None  # None: no snapshot for this instance (a first start)
    closes: list[CloseMark]  # close marks after the snapshot on the topic, in topic order
    end_offset: int  # where the scan stopped (the state partition's end)


# --------------------------------------------------------------------------- writing


def snapshot_text(checkpoint: Checkpoint) -> str:
    """The snapshot's JSON text (sorted keys): what the chunks slice."""
    try:
        return orjson.dumps(checkpoint.payload(), option=orjson.OPT_SORT_KEYS).decode()
    except TypeError as exc:
        raise CheckpointError(f"state of {checkpoint.instance} is not JSON-able: {exc}") from exc


def snapshot_records(checkpoint: Checkpoint, max_chunk_chars: int = MAX_CHUNK_CHARS) -> list[bytes]:
    """The values of one snapshot's records, in chunk order (produce them in one transaction)."""
    if max_chunk_chars < 1:
        raise ValueError(f"max_chunk_chars must be positive, got {max_chunk_chars}")
    bucket = "start" if checkpoint.bucket_end_ms is None else str(checkpoint.bucket_end_ms)
    head = {
        "schema_version": checkpoint.schema_version,
        "kind": "snapshot",
        "service": checkpoint.service,
        "instance": checkpoint.instance,
        "snapshot_id": f"{checkpoint.instance}/{bucket}/{uuid.uuid4().hex[:8]}",
        "bucket_end": None if checkpoint.bucket_end_ms is None else time_text(checkpoint.bucket_end_ms),
    }
    overhead = len(orjson.dumps({**head, "chunk": 10**9, "chunks": 10**9, "data": ""}))
    text = snapshot_text(checkpoint)
    pieces = [
        piece
        for start in range(0, len(text), max_chunk_chars)
        for piece in _fitting(text[start:start + max_chunk_chars], MAX_RECORD_BYTES - overhead)
    ]
    return [orjson.dumps({**head, "chunk": index, "chunks": len(pieces), "data": piece})
            for index, piece in enumerate(pieces)]


def _fitting(piece: str, limit: int) -> list[str]:
    # Split by characters (never inside a multi-byte one) until each slice's JSON form fits.
    if len(piece) <= 1 or len(orjson.dumps(piece)) <= limit:
        return [piece]
    middle = len(piece) // 2
    return [*_fitting(piece[:middle], limit), *_fitting(piece[middle:], limit)]


def close_record(mark: CloseMark) -> bytes:
    """The value of a bucket's close mark (produce it in the bucket's transaction)."""
    return orjson.dumps({
        "schema_version": SCHEMA_VERSION,
        "kind": "close",
        "service": mark.service,
        "instance": mark.instance,
        "bucket_end": time_text(mark.bucket_end_ms),
        "input_offsets": mark.input_offsets,
        "outputs": mark.outputs,
    })


# --------------------------------------------------------------------------- reading


def _upgraded(data: dict[str, Any], steps: dict[int, Callable[[dict[str, Any]], dict[str, Any]]],
              what: str, unchanged_without_step: bool = False) -> dict[str, Any]:
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{what} has no integer schema_version (got {version!r})")
    if version > SCHEMA_VERSION:
        raise CheckpointError(
            f"{what} has schema_version {version}, newer than {SCHEMA_VERSION}, the newest this code reads: "
            "run a release that knows it")
    while version < SCHEMA_VERSION:
        step = steps.get(version)
        if step is None and unchanged_without_step:
            step = _renumbered
        if step is None:
            raise CheckpointError(f"{what} has schema_version {version}: no migration from it to {SCHEMA_VERSION}")
        data = step(dict(data))
        if data.get("schema_version") != version + 1:
            raise CheckpointError(f"the migration from {what} schema_version {version} did not give {version + 1}")
        version += 1
    return data


def _renumbered(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "schema_version": data["schema_version"] + 1}


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """A parsed snapshot (its chunks joined) of any known version, in the current format."""
    return _upgraded(data, MIGRATIONS, "checkpoint")


def parse_record(raw: bytes | str | dict[str, Any] | None, where: str = "state record") -> StateRecord:
    """One state record, validated (older formats upgraded first); CheckpointError if unreadable."""
    if isinstance(raw, dict):
        data = raw
    else:
        if raw is None:
            raise CheckpointError(f"{where}: empty value")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise CheckpointError(f"{where}: not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise CheckpointError(f"{where}: expected a JSON object, got {type(data).__name__}")
    # The version first: a newer format may have new kinds.
    data = _upgraded(data, RECORD_MIGRATIONS, where, unchanged_without_step=True)
    if data.get("kind") not in ("snapshot", "close"):
        raise CheckpointError(f"{where}: unknown kind {data.get('kind')!r} (expected 'snapshot' or 'close')")
    try:
        return StateRecord.model_validate(data)
    except ValidationError as exc:
        raise CheckpointError(f"{where}: {validation_reason(exc)}") from exc


def close_mark(record: StateRecord | dict[str, Any]) -> CloseMark:
    if not isinstance(record, StateRecord):
        record = parse_record(record)
    if record.kind != "close" or record.bucket_end is None or record.input_offsets is None or record.outputs is None:
        raise CheckpointError(f"not a close record: {record.kind} of {record.instance}")
    return CloseMark(record.service, record.instance, millis(record.bucket_end), record.input_offsets,
                     record.outputs)


def load_checkpoint(records: Sequence[dict[str, Any] | StateRecord]) -> Checkpoint:
    """The checkpoint of one snapshot's records (all its chunks, in any order), migrated."""
    chunks = [record if isinstance(record, StateRecord) else parse_record(record) for record in records]
    if not chunks:
        raise CheckpointError("no snapshot records to load")
    if any(chunk.kind != "snapshot" for chunk in chunks):
        raise CheckpointError("a snapshot is loaded from snapshot records only")
    ids = {chunk.snapshot_id for chunk in chunks}
    if len(ids) != 1:
        raise CheckpointError(f"records of {len(ids)} snapshots given, expected one: {sorted(map(str, ids))}")
    snapshot_id = chunks[0].snapshot_id
    counts = {chunk.chunks for chunk in chunks}
    if len(counts) != 1:
        raise CheckpointError(f"snapshot {snapshot_id}: chunks disagree on their number: {sorted(map(str, counts))}")
    count = chunks[0].chunks or 0
    parts: dict[int, str] = {}
    for chunk in chunks:
        assert chunk.chunk is not None and chunk.data is not None  # StateRecord checked its kind's fields
        if parts.setdefault(chunk.chunk, chunk.data) != chunk.data:
            raise CheckpointError(f"snapshot {snapshot_id}: two different chunk {chunk.chunk}")
    missing = [index for index in range(count) if index not in parts]
    if missing:
        raise CheckpointError(f"snapshot {snapshot_id} is incomplete: chunks {missing} of {count} missing")
    try:
        data = orjson.loads("".join(parts[index] for index in range(count)))
    except orjson.JSONDecodeError as exc:
        raise CheckpointError(f"snapshot {snapshot_id}: its joined chunks are not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"snapshot {snapshot_id}: expected a JSON object")
    data = migrate(data)
    absent = [name for name in PAYLOAD_FIELDS if name not in data]
    if absent:
        raise CheckpointError(f"snapshot {snapshot_id}: no {', '.join(absent)}")
    bucket_end_ms = data["bucket_end_ms"]
    if not (bucket_end_ms is None or (isinstance(bucket_end_ms, int) and not isinstance(bucket_end_ms, bool))):
        raise CheckpointError(f"snapshot {snapshot_id}: bucket_end_ms must be an integer or null")
    for name in ("input_offsets", "clock", "calculator"):
        if not isinstance(data[name], dict):
            raise CheckpointError(f"snapshot {snapshot_id}: {name} must be an object")
    if (data["service"], data["instance"]) != (chunks[0].service, chunks[0].instance):
        raise CheckpointError(f"snapshot {snapshot_id}: its state belongs to {data['service']}/{data['instance']}")
    return Checkpoint(
        service=data["service"],
        instance=data["instance"],
        bucket_end_ms=bucket_end_ms,
        input_offsets=data["input_offsets"],
        clock=data["clock"],
        calculator=data["calculator"],
        schema_version=data["schema_version"],
    )


# --------------------------------------------------------------------------- restore


@dataclass
class _Snapshot:
    records: dict[int, StateRecord] = field(default_factory=dict)  # offset -> chunk
    count: int = 0

    @property
    def last_offset(self) -> int:
        return max(self.records)

    def indices(self) -> set[int]:
        return {record.chunk for record in self.records.values() if record.chunk is not None}

    def complete(self) -> bool:
        return self.indices() >= set(range(self.count))


@dataclass
class _Scan:
    """What a backward scan has read of one instance's records, and the snapshot it picks."""

    before_bucket_ms: int | None
    snapshots: dict[str, _Snapshot] = field(default_factory=dict)
    closes: list[tuple[int, CloseMark]] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)

    def add(self, offset: int, record: StateRecord) -> None:
        if record.kind == "close":
            self.closes.append((offset, close_mark(record)))
            return
        if not self._eligible(record):
            return  # newer than the restore wants: neither a candidate nor worth its memory
        snapshot = self.snapshots.setdefault(str(record.snapshot_id), _Snapshot(count=record.chunks or 0))
        snapshot.records[offset] = record
        if snapshot.complete():
            # Only the newest complete snapshot can be picked: forget the data of older ones.
            newest = snapshot.last_offset
            for key, other in list(self.snapshots.items()):
                if other.last_offset < newest:
                    del self.snapshots[key]

    def _eligible(self, record: StateRecord) -> bool:
        if self.before_bucket_ms is None or record.bucket_end is None:
            return True  # a snapshot before any close counts as older than every bucket
        return millis(record.bucket_end) < self.before_bucket_ms

    def pick(self, reached_floor: bool) -> _Snapshot | None:
        """The newest complete snapshot, or None while a newer one may still have chunks below
        what was read (or when there is none at all)."""
        for snapshot in sorted(self.snapshots.values(), key=lambda s: s.last_offset, reverse=True):
            if snapshot.complete():
                return snapshot
            if 0 in snapshot.indices() or reached_floor:
                # Chunks are written in order: with chunk 0 read, the missing ones are nowhere.
                self.skipped.add(str(next(iter(snapshot.records.values())).snapshot_id))
                continue
            return None
        return None


def _read_window(consumer: Consumer, topic: str, start: int, end: int, instance: str,
                 deadline: float) -> Iterator[tuple[int, StateRecord]]:
    """This instance's records at offsets [start, end), stopping at partition EOF."""
    consumer.assign([TopicPartition(topic, 0, start)])
    key = instance.encode()
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not read {topic} [{start}, {end}) in time")
        message = consumer.poll(0.2)
        if message is None:
            continue
        if message.error():
            if message.error().code() == KafkaError._PARTITION_EOF:
                return  # everything committed has been read
            if message.error().fatal():
                raise CheckpointError(f"reading {topic}: {message.error()}")
            continue
        offset = message.offset()
        if offset >= end:
            return
        if offset < start or message.key() != key:
            continue
        record = parse_record(message.value(), f"{topic} offset {offset}")
        if record.instance != instance:
            raise CheckpointError(f"{topic} offset {offset}: key {instance!r} but instance {record.instance!r}")
        yield offset, record


def read_restore(settings: ServiceSettings, topic: str, instance: str, *, since_ms: int | None = None,
                 before_bucket_ms: int | None = None, timeout: float = 30.0) -> Restore:
    """The newest complete snapshot of `instance` on `topic` and every close mark after it.

    Reads committed records only and scans backwards from the end in widening windows, so a
    snapshot near the end costs a short read whatever the topic holds. `since_ms`: ignore
    records appended before this Kafka timestamp. `before_bucket_ms`: the newest snapshot whose
    bucket is earlier than this instead (to recompute a past range; every later close is returned).
    """
    consumer = Consumer({
        **base_config(settings), "group.id": "syi-checkpoint-reader", "enable.auto.commit": False,
        "isolation.level": "read_committed", "enable.partition.eof": True,
    })
    deadline = time.monotonic() + timeout
    try:
        metadata = consumer.list_topics(timeout=timeout)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            raise CheckpointError(f"state topic {topic} does not exist (provision it first)")
        if len(found.partitions) != 1:
            raise CheckpointError(f"state topic {topic} has {len(found.partitions)} partitions, expected 1")
        # With read_committed the "high" offset is the last stable offset.
        low, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout, cached=False)
        floor = low
        if since_ms is not None:
            first = consumer.offsets_for_times([TopicPartition(topic, 0, since_ms)], timeout=timeout)[0].offset
            floor = max(low, first) if first >= 0 else end  # -1: nothing that recent
        scan = _Scan(before_bucket_ms)
        upper, width = end, FIRST_WINDOW
        chosen: _Snapshot | None = None
        while True:
            start = max(floor, upper - width)
            if start < upper:
                for offset, record in _read_window(consumer, topic, start, upper, instance, deadline):
                    scan.add(offset, record)
            chosen = scan.pick(reached_floor=start <= floor)
            if chosen is not None or start <= floor:
                break
            upper, width = start, width * WIDEN
        if scan.skipped:
            get_logger().warning("incomplete snapshots skipped", topic=topic, instance=instance,
                                 snapshots=sorted(scan.skipped))
        after = chosen.last_offset if chosen is not None else -1
        checkpoint = load_checkpoint(list(chosen.records.values())) if chosen is not None else None
        closes = [mark for offset, mark in sorted(scan.closes, key=lambda item: item[0]) if offset > after]
        return Restore(checkpoint, closes, end)
    finally:
        consumer.close()
