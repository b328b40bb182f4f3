"""Against the real broker: state records written with a transactional producer are read back
by `read_restore` (newest complete snapshot, the close marks after it), aborted ones never."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer

from syi_shared import checkpoint as ckpt
from syi_shared.admin import provision_topics
from syi_shared.checkpoint import (
    FIRST_WINDOW,
    Checkpoint,
    CheckpointError,
    CloseMark,
    close_record,
    read_restore,
    snapshot_records,
)
from syi_shared.kafka import make_producer
from syi_shared.models import StateRecord
from syi_shared.topics import DAY_MS, Topic

pytestmark = pytest.mark.integration

T0 = 1_795_132_980_000  # 2026-11-20T00:03:00Z
MINUTE = 60_000


@pytest.fixture
def state_topic(kafka_settings) -> str:
    name = f"state.test-{uuid.uuid4().hex[:10]}"
    provision_topics(kafka_settings, [Topic(name, StateRecord, "{instance}", 1, "delete", DAY_MS, ("test",), ("test",),
                                            configs={"max.message.bytes": "1048588"})])
    return name


@pytest.fixture
def instance() -> str:
    return f"syi-calc-{uuid.uuid4().hex[:8]}"


class Writer:
    """A calculator's half, as the sink does it: every write in a transaction of its own."""

    def __init__(self, settings, topic: str) -> None:
        self.topic = topic
        self.producer: Producer = make_producer(settings, **{"transactional.id": f"test-{uuid.uuid4().hex}"})
        self.producer.init_transactions(30)
        self.offsets: list[int] = []  # of every record delivered, in order

    def _delivered(self, error, message) -> None:
        assert error is None, error
        self.offsets.append(message.offset())

    def transaction(self, writes: list[tuple[str, bytes]], commit: bool = True) -> None:
        self.producer.begin_transaction()
        for key, value in writes:
            self.producer.produce(self.topic, key=key.encode(), value=value, on_delivery=self._delivered)
        if commit:
            self.producer.commit_transaction(30)
        else:
            self.producer.flush(30)  # on the log, but never committed
            self.producer.abort_transaction(30)

    def snapshot(self, state: Checkpoint, commit: bool = True, chunk_chars: int = 200) -> None:
        self.transaction([(state.instance, raw) for raw in snapshot_records(state, max_chunk_chars=chunk_chars)],
                         commit)

    def closes(self, marks: list[CloseMark], commit: bool = True) -> None:
        self.transaction([(mark.instance, close_record(mark)) for mark in marks], commit)


def state(instance: str, bucket_end_ms: int | None, size: int = 60) -> Checkpoint:
    last = bucket_end_ms or 0
    return Checkpoint(
        service="syi-calc",
        instance=instance,
        bucket_end_ms=bucket_end_ms,
        input_offsets={"ray.calculated": {"0": last // MINUTE % 1000, "1": 3}},
        clock={"last_closed_ms": bucket_end_ms},
        calculator={"history": [[last - i * MINUTE, i / 3] for i in range(size)]},
    )


def close(instance: str, bucket_end_ms: int, outputs: int = 1) -> CloseMark:
    return CloseMark("syi-calc", instance, bucket_end_ms, {"ray.calculated": {"0": bucket_end_ms // MINUTE % 1000}},
                     outputs)


def closes(instance: str, first_ms: int, count: int) -> list[CloseMark]:
    return [close(instance, first_ms + i * MINUTE, (first_ms // MINUTE + i) % 3) for i in range(count)]


@pytest.fixture
def writer(kafka_settings, state_topic) -> Iterator[Writer]:
    made = Writer(kafka_settings, state_topic)
    yield made
    made.producer.close()


@pytest.fixture
def windows(monkeypatch) -> Iterator[list[tuple[int, int]]]:
    """The offset windows read_restore reads, in order."""
    seen: list[tuple[int, int]] = []
    real = ckpt._read_window

    def spy(consumer, topic, start, end, instance, deadline):
        seen.append((start, end))
        return real(consumer, topic, start, end, instance, deadline)

    monkeypatch.setattr(ckpt, "_read_window", spy)
    yield seen


def test_a_first_start_finds_nothing(kafka_settings, state_topic, instance):
    restore = read_restore(kafka_settings, state_topic, instance, timeout=20)
    assert restore == ckpt.Restore(None, [], 0)


def test_the_newest_snapshot_comes_back_with_the_closes_after_it(kafka_settings, writer, state_topic, instance, windows):
    writer.snapshot(state(instance, T0))
    for mark in closes(instance, T0 + MINUTE, 3):
        writer.closes([mark])
    restore = read_restore(kafka_settings, state_topic, instance, timeout=20)
    assert restore.checkpoint == state(instance, T0)
    assert restore.closes == closes(instance, T0 + MINUTE, 3)
    # each transaction's commit marker occupies an offset: the end is past the last record
    assert restore.end_offset == writer.offsets[-1] + 2
    assert windows == [(0, restore.end_offset)]


def test_an_aborted_transaction_is_never_seen(kafka_settings, writer, state_topic, instance):
    writer.snapshot(state(instance, T0))
    writer.closes([close(instance, T0 + MINUTE)])
    writer.closes([close(instance, T0 + 2 * MINUTE, 99)], commit=False)  # a bucket that crashed mid-publish
    writer.snapshot(state(instance, T0 + 2 * MINUTE), commit=False)
    writer.closes([close(instance, T0 + 2 * MINUTE)])
    restore = read_restore(kafka_settings, state_topic, instance, timeout=20)
    assert restore.checkpoint == state(instance, T0)
    assert restore.closes == [close(instance, T0 + MINUTE), close(instance, T0 + 2 * MINUTE)]


def test_two_instances_interleaved_on_one_topic_each_get_their_own(kafka_settings, writer, state_topic):
    a, b = (f"syi-calc-{name}-{uuid.uuid4().hex[:6]}" for name in "ab")
    writer.snapshot(state(a, T0))
    writer.snapshot(state(b, T0 + 10 * MINUTE))
    writer.closes([close(a, T0 + MINUTE), close(b, T0 + 11 * MINUTE)])
    writer.snapshot(state(b, T0 + 11 * MINUTE))  # b's newer snapshot does not hide a's closes
    writer.closes([close(b, T0 + 12 * MINUTE), close(a, T0 + 2 * MINUTE)])
    restore_a = read_restore(kafka_settings, state_topic, a, timeout=20)
    restore_b = read_restore(kafka_settings, state_topic, b, timeout=20)
    assert restore_a.checkpoint == state(a, T0)
    assert restore_a.closes == [close(a, T0 + MINUTE), close(a, T0 + 2 * MINUTE)]
    assert restore_b.checkpoint == state(b, T0 + 11 * MINUTE)
    assert restore_b.closes == [close(b, T0 + 12 * MINUTE)]
    assert read_restore(kafka_settings, state_topic, "syi-calc-nobody", timeout=20).checkpoint is None


def test_an_older_snapshot_is_found_for_a_past_range(kafka_settings, writer, state_topic, instance):
    writer.snapshot(state(instance, None))  # taken at start, before any close
    writer.closes(closes(instance, T0, 2))
    writer.snapshot(state(instance, T0 + MINUTE))
    writer.closes(closes(instance, T0 + 2 * MINUTE, 3))
    writer.snapshot(state(instance, T0 + 4 * MINUTE))
    writer.closes(closes(instance, T0 + 5 * MINUTE, 2))
    newest = read_restore(kafka_settings, state_topic, instance, timeout=20)
    assert newest.checkpoint == state(instance, T0 + 4 * MINUTE)
    assert newest.closes == closes(instance, T0 + 5 * MINUTE, 2)
    past = read_restore(kafka_settings, state_topic, instance, before_bucket_ms=T0 + 4 * MINUTE, timeout=20)
    assert past.checkpoint == state(instance, T0 + MINUTE)
    assert past.closes == closes(instance, T0 + 2 * MINUTE, 5)  # every close after it, past the newer snapshot
    first = read_restore(kafka_settings, state_topic, instance, before_bucket_ms=T0, timeout=20)
    assert first.checkpoint == state(instance, None)
    assert first.closes == closes(instance, T0, 7)
    assert past.end_offset == first.end_offset == newest.end_offset


def test_a_snapshot_older_than_the_first_window_is_found(kafka_settings, writer, state_topic, instance, windows):
    writer.snapshot(state(instance, T0, size=300), chunk_chars=1000)
    snapshot_end = writer.offsets[-1]
    marks = closes(instance, T0 + MINUTE, 600)
    for start in range(0, 600, 20):
        writer.closes(marks[start:start + 20])
    restore = read_restore(kafka_settings, state_topic, instance, timeout=30)
    assert restore.checkpoint == state(instance, T0, size=300)
    assert restore.closes == marks
    assert restore.end_offset > snapshot_end + 600
    assert windows[0] == (restore.end_offset - FIRST_WINDOW, restore.end_offset)
    assert windows[1] == (max(0, windows[0][0] - 4 * FIRST_WINDOW), windows[0][0])
    assert windows[-1][0] == 0


def test_a_snapshot_cut_by_a_window_edge_is_read_whole(kafka_settings, writer, state_topic, instance, windows):
    writer.snapshot(state(instance, T0 - MINUTE))  # an older one, complete
    chunks = len(snapshot_records(state(instance, T0, size=200), max_chunk_chars=300))
    assert chunks > 4
    writer.snapshot(state(instance, T0, size=200), chunk_chars=300)
    first_chunk, last_chunk = writer.offsets[-chunks], writer.offsets[-1]
    # closes, one transaction each (a record and a marker), until the first window starts just
    # after the snapshot's first chunk
    count = (FIRST_WINDOW - (last_chunk - first_chunk)) // 2
    marks = closes(instance, T0 + MINUTE, count)
    for mark in marks:
        writer.closes([mark])
    restore = read_restore(kafka_settings, state_topic, instance, timeout=30)
    assert first_chunk < windows[0][0] <= last_chunk, (first_chunk, windows, last_chunk)
    assert len(windows) == 2
    assert restore.checkpoint == state(instance, T0, size=200)
    assert restore.closes == marks


def test_since_ignores_older_records(kafka_settings, writer, state_topic, instance):
    writer.snapshot(state(instance, T0))
    writer.closes([close(instance, T0 + MINUTE)])
    time.sleep(0.05)
    since_ms = int(time.time() * 1000)
    time.sleep(0.05)
    writer.closes([close(instance, T0 + 2 * MINUTE)])
    restore = read_restore(kafka_settings, state_topic, instance, since_ms=since_ms, timeout=20)
    assert restore.checkpoint is None
    assert restore.closes == [close(instance, T0 + 2 * MINUTE)]
    later = read_restore(kafka_settings, state_topic, instance, since_ms=since_ms + 3_600_000, timeout=20)
    assert (later.checkpoint, later.closes) == (None, [])


def test_an_incomplete_snapshot_is_skipped_for_the_complete_one_before_it(kafka_settings, writer, state_topic, instance):
    writer.snapshot(state(instance, T0))
    writer.closes([close(instance, T0 + MINUTE)])
    for lost in (0, -1):  # without its first chunk, then without its last
        records = snapshot_records(state(instance, T0 + MINUTE), max_chunk_chars=200)
        del records[lost]
        writer.transaction([(instance, raw) for raw in records])
    writer.closes([close(instance, T0 + 2 * MINUTE)])
    restore = read_restore(kafka_settings, state_topic, instance, timeout=20)
    assert restore.checkpoint == state(instance, T0)
    assert restore.closes == [close(instance, T0 + MINUTE), close(instance, T0 + 2 * MINUTE)]


@pytest.mark.parametrize(("value", "message"), [
    (b"{not json", "not JSON"),
    (b'{"schema_version": 1, "kind": "delta", "service": "syi-calc", "instance": "x"}', "unknown kind"),
    (b'{"schema_version": 9, "kind": "close", "service": "syi-calc", "instance": "x"}', "schema_version 9, newer than 1"),
])
def test_a_corrupt_record_of_the_instance_raises(kafka_settings, writer, state_topic, instance, value, message):
    writer.snapshot(state(instance, T0))
    writer.transaction([("someone-else", value)])
    assert read_restore(kafka_settings, state_topic, instance, timeout=20).checkpoint == state(instance, T0)
    writer.transaction([(instance, value)])
    with pytest.raises(CheckpointError, match=message):
        read_restore(kafka_settings, state_topic, instance, timeout=20)


def test_a_missing_state_topic_is_an_error(kafka_settings, instance):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_restore(kafka_settings, f"state.absent-{uuid.uuid4().hex[:8]}", instance, timeout=20)


def test_a_multi_megabyte_snapshot_fits_the_topic_in_default_chunks(kafka_settings, writer, state_topic, instance):
    # Quote-heavy text, as the engines' nested records are: escaped, it nearly doubles.
    big = Checkpoint("ray-calc", instance, T0, {"cc.prices": {"0": 1}}, {"last_closed_ms": T0},
                     {"prices": [[f'"{i}"', {"venue": "binance", "price": 1 + i / 1e6}] for i in range(90_000)]})
    raws = snapshot_records(big)
    assert len(raws) >= 5
    writer.transaction([(instance, raw) for raw in raws])
    writer.closes([close(instance, T0 + MINUTE)])
    restore = read_restore(kafka_settings, state_topic, instance, timeout=30)
    assert restore.checkpoint == big
    assert restore.closes == [close(instance, T0 + MINUTE)]
