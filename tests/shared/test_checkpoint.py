"""The checkpoint format without Kafka: chunking round trips, close marks, versions and migration,
and every stored fixture (tests/fixtures/checkpoints) still loading into the current code."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from syi_shared import checkpoint as ckpt
from syi_shared.checkpoint import (
    MAX_CHUNK_CHARS,
    MAX_RECORD_BYTES,
    SCHEMA_VERSION,
    Checkpoint,
    CheckpointError,
    CloseMark,
    close_mark,
    close_record,
    load_checkpoint,
    migrate,
    parse_record,
    snapshot_records,
    snapshot_text,
)
from syi_shared.methodology.state import IndexState, RayState
from syi_shared.models import StateRecord
from syi_shared.streaming.clock import ClockState
from syi_shared.topics import STATE_TOPICS, all_topics, state_topic, topic

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints"
TOPIC_MAX_MESSAGE_BYTES = 1_048_588
BUCKET = 1_795_132_980_000  # 2026-11-20T00:03:00Z


def sample(calculator: dict | None = None, bucket_end_ms: int | None = BUCKET) -> Checkpoint:
    return Checkpoint(
        service="syi-calc",
        instance="syi-calc-0",
        bucket_end_ms=bucket_end_ms,
        input_offsets={"ray.calculated": {"0": 120, "1": 98, "2": 131}, "ex.mktcap": {"0": 7}},
        clock={"last_closed_ms": bucket_end_ms, "partitions": {"ray.calculated/0": {"next_offset": 120}}},
        calculator=calculator if calculator is not None else {"last_cid": "bafy", "weights": {"USDC": 0.5}},
    )


def parsed(raws: list[bytes]) -> list[dict]:
    return [orjson.loads(raw) for raw in raws]


# --------------------------------------------------------------------------- chunking


@pytest.mark.parametrize("size", [1, 7, 64, 1000, MAX_CHUNK_CHARS])
def test_a_snapshot_round_trips_through_its_chunks_in_any_order(size):
    state = sample({"history": [[i, i / 7, f"venue-{i}"] for i in range(40)], "text": "a\"b\\c\nd"})
    raws = snapshot_records(state, max_chunk_chars=size)
    records = parsed(raws)
    text = snapshot_text(state)
    assert len(raws) == -(-len(text) // size)
    assert [r["chunk"] for r in records] == list(range(len(raws)))
    assert {r["chunks"] for r in records} == {len(raws)}
    assert len({r["snapshot_id"] for r in records}) == 1
    assert "".join(r["data"] for r in records) == text
    random.Random(size).shuffle(records)
    assert load_checkpoint(records) == state


def test_the_snapshot_text_is_sorted_json_of_the_documented_fields():
    state = sample()
    text = snapshot_text(state)
    assert text == orjson.dumps(state.payload(), option=orjson.OPT_SORT_KEYS).decode()
    assert list(orjson.loads(text)) == sorted(
        ["schema_version", "service", "instance", "bucket_end_ms", "input_offsets", "clock", "calculator"])
    envelope = orjson.loads(snapshot_records(state)[0])
    assert {k: v for k, v in envelope.items() if k not in ("snapshot_id", "data")} == {
        "schema_version": 1, "kind": "snapshot", "service": "syi-calc", "instance": "syi-calc-0",
        "bucket_end": "2026-11-20T00:03:00.000Z", "chunk": 0, "chunks": 1}
    assert re.fullmatch(r"syi-calc-0/1795132980000/[0-9a-f]{8}", envelope["snapshot_id"])


def test_unicode_is_never_cut_inside_a_character():
    text = "µ€𝄞 ✓ 中文 " * 50  # 2-, 3- and 4-byte characters
    state = sample({"notes": text, "symbols": {"€URO": 1, "𝄞": [text]}})
    for size in (1, 2, 3, 5, 11):
        records = parsed(snapshot_records(state, max_chunk_chars=size))
        assert all(len(r["data"]) <= size for r in records)
        assert load_checkpoint(records).calculator == state.calculator


def test_snapshot_ids_differ_and_a_state_before_any_close_has_a_null_bucket():
    first, second = (orjson.loads(snapshot_records(sample(bucket_end_ms=None))[0]) for _ in range(2))
    assert first["snapshot_id"] != second["snapshot_id"]
    assert first["bucket_end"] is None and first["snapshot_id"].startswith("syi-calc-0/start/")
    assert load_checkpoint([first]).bucket_end_ms is None


def test_a_multi_megabyte_state_is_chunked_under_the_topics_message_size():
    rng = random.Random(7)
    calculator = {
        "peg_prices": {f"S{s}": {"items": [[BUCKET + i * 60_000, rng.random()] for i in range(15_000)]}
                       for s in range(6)},
    }
    state = sample(calculator)
    assert len(snapshot_text(state)) > 3_000_000
    raws = snapshot_records(state)
    assert len(raws) >= 6
    assert max(len(raw) for raw in raws) < min(MAX_RECORD_BYTES, TOPIC_MAX_MESSAGE_BYTES)
    assert load_checkpoint(parsed(raws)[::-1]) == state


@pytest.mark.parametrize("dense", ['"', "\\", "𝄞"])
def test_a_chunk_whose_escaping_would_overflow_a_record_is_split_further(dense):
    # Quotes and backslashes double when a slice is escaped; a 4-byte character takes 4 bytes.
    state = sample({"blob": dense * 600_000})
    raws = snapshot_records(state)
    assert max(len(raw) for raw in raws) <= MAX_RECORD_BYTES
    records = parsed(raws)
    assert [r["chunk"] for r in records] == list(range(len(records)))
    assert load_checkpoint(records) == state


def test_state_that_is_not_json_is_refused_when_written():
    with pytest.raises(CheckpointError, match="not JSON-able"):
        snapshot_records(sample({"when": object()}))


# --------------------------------------------------------------------------- close marks


@pytest.mark.parametrize("outputs", [0, 18])
def test_a_close_mark_round_trips(outputs):
    mark = CloseMark("ray-calc", "ray-calc-0", BUCKET, {"cc.prices": {"0": 32, "5": 60}, "dl.apy": {}}, outputs)
    raw = close_record(mark)
    assert orjson.loads(raw) == {
        "schema_version": 1, "kind": "close", "service": "ray-calc", "instance": "ray-calc-0",
        "bucket_end": "2026-11-20T00:03:00.000Z", "input_offsets": mark.input_offsets, "outputs": outputs}
    record = parse_record(raw)
    assert record.key() == "ray-calc-0"
    assert close_mark(record) == mark


# --------------------------------------------------------------------------- unreadable records


@pytest.mark.parametrize(("raw", "message"), [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (None, "empty value"),
    (b'{"schema_version": 1, "kind": "delta", "service": "s", "instance": "i"}', "unknown kind 'delta'"),
    (b'{"kind": "close", "service": "s", "instance": "i"}', "no integer schema_version"),
    (b'{"schema_version": 1, "kind": "close", "service": "s", "instance": "i", "bucket_end": "2026-11-20T00:03:00Z",'
     b' "input_offsets": {}}', "a close record needs outputs"),
    (b'{"schema_version": 1, "kind": "close", "service": "s", "instance": "i", "bucket_end": "2026-11-20T00:03:00Z",'
     b' "input_offsets": {}, "outputs": 1, "data": "x"}', "a close record has no data"),
    (b'{"schema_version": 1, "kind": "snapshot", "service": "s", "instance": "i", "snapshot_id": "x",'
     b' "chunk": 2, "chunks": 2, "data": ""}', "chunk 2 is not below chunks 2"),
    (b'{"schema_version": 1, "kind": "close", "service": "s", "instance": "i", "bucket_end": "2026-11-20T00:03:00Z",'
     b' "input_offsets": {}, "outputs": 1, "surprise": true}', "surprise"),
])
def test_an_unreadable_record_raises_a_clear_checkpoint_error(raw, message):
    with pytest.raises(CheckpointError, match=re.escape(message)):
        parse_record(raw, "state.test offset 3")


def test_a_record_of_a_newer_format_names_both_versions():
    raw = orjson.loads(close_record(CloseMark("ray-calc", "r", BUCKET, {}, 0)))
    with pytest.raises(CheckpointError, match=r"schema_version 2, newer than 1"):
        parse_record({**raw, "schema_version": 2, "kind": "delta"})


def test_an_incomplete_or_mixed_snapshot_does_not_load():
    records = parsed(snapshot_records(sample({"x": list(range(100))}), max_chunk_chars=50))
    with pytest.raises(CheckpointError, match=r"incomplete: chunks \[1\] of"):
        load_checkpoint([records[0], *records[2:]])
    other = parsed(snapshot_records(sample({"x": list(range(100))}), max_chunk_chars=50))
    with pytest.raises(CheckpointError, match="records of 2 snapshots"):
        load_checkpoint([*records[:-1], other[-1]])
    with pytest.raises(CheckpointError, match="no snapshot records"):
        load_checkpoint([])
    assert load_checkpoint([*records, records[0]]).calculator == {"x": list(range(100))}  # a repeat is harmless
    with pytest.raises(CheckpointError, match="two different chunk 0"):
        load_checkpoint([*records, {**records[0], "data": records[0]["data"][::-1]}])


def test_joined_chunks_that_are_not_a_snapshot_do_not_load():
    head = {"schema_version": 1, "kind": "snapshot", "service": "s", "instance": "i", "snapshot_id": "i/1/x",
            "bucket_end": None, "chunk": 0, "chunks": 1}
    with pytest.raises(CheckpointError, match="not JSON"):
        load_checkpoint([{**head, "data": '{"cut": '}])
    with pytest.raises(CheckpointError, match="no bucket_end_ms, calculator"):
        load_checkpoint([{**head, "data": '{"schema_version": 1, "service": "s", "instance": "i", '
                                          '"input_offsets": {}, "clock": {}}'}])


# --------------------------------------------------------------------------- versions


def test_migrate_keeps_the_current_version_and_refuses_a_newer_one():
    data = orjson.loads(snapshot_text(sample()))
    assert migrate(data) == data
    with pytest.raises(CheckpointError, match=r"schema_version 7, newer than 1"):
        migrate({**data, "schema_version": 7})
    with pytest.raises(CheckpointError, match="no integer schema_version"):
        migrate({k: v for k, v in data.items() if k != "schema_version"})


def test_a_newer_snapshot_behind_a_current_envelope_is_refused():
    records = parsed(snapshot_records(sample()))
    data = orjson.loads(records[0]["data"])
    records[0]["data"] = orjson.dumps({**data, "schema_version": 2}).decode()
    with pytest.raises(CheckpointError, match="newer than 1"):
        load_checkpoint(records)


def test_migrations_run_in_steps_up_to_the_current_version(monkeypatch):
    # How a version 2 would plug in: SCHEMA_VERSION moves on, MIGRATIONS[1] upgrades a v1 snapshot.
    def one_to_two(data):
        return {**data, "schema_version": 2, "calculator": {**data["calculator"], "added_in_v2": True}}

    monkeypatch.setattr(ckpt, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(ckpt.MIGRATIONS, 1, one_to_two)
    v1 = parsed(snapshot_records(sample()))
    loaded = load_checkpoint(v1)
    assert loaded.schema_version == 2 and loaded.calculator["added_in_v2"] is True
    monkeypatch.delitem(ckpt.MIGRATIONS, 1)
    with pytest.raises(CheckpointError, match="no migration from it to 2"):
        load_checkpoint(v1)


def fixture_files() -> list[Path]:
    return sorted(FIXTURES.glob("v*.jsonl"))


def test_there_is_a_fixture_of_every_version_for_both_calculators():
    names = {path.name for path in fixture_files()}
    for version in range(1, SCHEMA_VERSION + 1):
        assert {f"v{version}-ray-calc.jsonl", f"v{version}-syi-calc.jsonl"} <= names, names


@pytest.mark.parametrize("path", fixture_files(), ids=lambda path: path.name)
def test_every_stored_fixture_keeps_loading_into_the_current_code(path):
    version, service = re.fullmatch(r"v(\d+)-(.+)\.jsonl", path.name).groups()
    snapshots: dict[str, list] = defaultdict(list)
    closes = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        record = parse_record(line, f"{path.name} line {number}")
        if record.kind == "snapshot":
            snapshots[str(record.snapshot_id)].append(record)
        else:
            closes.append(close_mark(record))
    assert len(snapshots) == 1 and closes
    chunks = next(iter(snapshots.values()))
    assert len(chunks) > 1, "a fixture shows a snapshot in several chunks"
    assert {orjson.loads(line)["schema_version"] for line in path.read_bytes().splitlines()} == {int(version)}
    loaded = load_checkpoint(chunks[::-1])
    assert loaded.schema_version == SCHEMA_VERSION
    assert loaded.service == service and loaded.instance == chunks[0].instance
    # The current engine and bucket clock take the migrated state as it is.
    engine_state = RayState if service == "ray-calc" else IndexState
    assert engine_state.from_dict(loaded.calculator).to_dict() == loaded.calculator
    assert ClockState.from_dict(loaded.clock).to_dict() == loaded.clock
    assert loaded.bucket_end_ms is not None
    assert [mark.bucket_end_ms for mark in closes] == [loaded.bucket_end_ms + 60_000 * (i + 1)
                                                       for i in range(len(closes))]
    assert all(mark.service == service and mark.input_offsets for mark in closes)


# --------------------------------------------------------------------------- registry


def test_the_state_topics_are_in_the_registry_without_dead_letter_twins():
    names = [t.name for t in all_topics()]
    assert {"state.ray-calc", "state.syi-calc"} <= set(names)
    assert not [name for name in names if name.startswith("state.") and name.endswith(".dlq")]
    for service in ("ray-calc", "syi-calc"):
        registered = topic(state_topic(service))
        assert registered is STATE_TOPICS[f"state.{service}"]
        assert (registered.partitions, registered.cleanup_policy, registered.producers) == (1, "delete", (service,))
        assert registered.retention_ms == topic("dl.apy").retention_ms == topic("ex.mktcap").retention_ms
        assert registered.kafka_configs()["max.message.bytes"] == str(TOPIC_MAX_MESSAGE_BYTES)
        assert registered.model is StateRecord and registered.stale_after_s is None
    with pytest.raises(KeyError, match="no state topic for 'ws-gateway'"):
        state_topic("ws-gateway")


def test_state_records_validate_as_their_registry_model():
    raw = snapshot_records(sample())[0]
    assert topic("state.syi-calc").model.model_validate_json(raw).key() == "syi-calc-0"
    with pytest.raises(ValidationError):
        StateRecord.model_validate({**orjson.loads(raw), "extra": 1})
