"""`syi verify`: the audit chain of `syi compute` output holds, tampering is found, CIDs match ipfs-cid."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from multiformats import CID

from syi_cli import verify
from syi_shared.kafka import make_producer
from syi_shared.methodology.audit import NOT_HASHED, hashed_bytes, record_cid_of
from syi_shared.settings import ServiceSettings
from tests.cli.conftest import syi


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def write(path: Path, records: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(records) + b"\n")
    return path


def test_verify_passes_on_the_computed_demo_tape(demo_index: Path) -> None:
    done = syi("verify", str(demo_index))
    assert done.returncode == 0, done.stdout
    summary = done.stdout.decode()
    last_cid = orjson.loads(lines(demo_index)[-1])["cid"]
    assert "intact: 390 records" in summary and "2026-11-20T06:30:00.000Z" in summary and last_cid in summary


def test_verify_finds_a_changed_value(demo_index: Path, tmp_path: Path) -> None:
    records = lines(demo_index)
    tampered = orjson.loads(records[99])
    tampered["syi_decimal"] += 0.0001  # a one-basis-point rewrite of history
    records[99] = orjson.dumps(tampered)
    done = syi("verify", str(write(tmp_path / "tampered.jsonl", records)))
    assert done.returncode == 1
    report = done.stdout.decode()
    assert "after 99 good records" in report and "line 100" in report and "cid mismatch" in report
    assert tampered["bucket_end"] in report


def test_verify_finds_a_deleted_record(demo_index: Path, tmp_path: Path) -> None:
    records = lines(demo_index)
    del records[41]
    done = syi("verify", str(write(tmp_path / "deleted.jsonl", records)))
    assert done.returncode == 1
    report = done.stdout.decode()
    assert "line 42" in report and "a record is missing" in report


def test_verify_finds_a_recomputed_but_relinked_chain(demo_index: Path, tmp_path: Path) -> None:
    # A forger who rewrites a value and fixes its cid still breaks the next record's prev_cid.
    records = lines(demo_index)
    forged = orjson.loads(records[10])
    forged["syi_decimal"] = 0.5
    forged["cid"] = record_cid_of(forged)
    records[10] = orjson.dumps(forged)
    done = syi("verify", str(write(tmp_path / "forged.jsonl", records)))
    assert done.returncode == 1 and "line 12" in done.stdout.decode()


def test_verify_finds_reordered_records_and_a_missing_start(demo_index: Path, tmp_path: Path) -> None:
    records = lines(demo_index)
    swapped = records[:5] + [records[6], records[5]] + records[7:]
    report = syi("verify", str(write(tmp_path / "swapped.jsonl", swapped))).stdout.decode()
    assert "line 6" in report and "a record is missing" in report
    truncated = syi("verify", str(write(tmp_path / "truncated.jsonl", records[1:])))
    assert truncated.returncode == 1 and "first record" in truncated.stdout.decode()


@pytest.mark.integration
def test_verify_reads_a_topic(provisioned: ServiceSettings, demo_index: Path) -> None:
    # A topic of its own: other tests may publish into syi.calculated on the shared broker.
    topic = f"test.syi.{uuid.uuid4().hex[:8]}"
    admin = AdminClient(provisioned.kafka_config())
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=60)
    producer = make_producer(provisioned)
    for record in lines(demo_index)[:60]:
        producer.produce(topic, key=b"SYI", value=record)
    assert producer.flush(60) == 0
    bootstrap = provisioned.kafka_config()["bootstrap.servers"]

    done = syi("verify", "--topic", topic, "--bootstrap", bootstrap)
    assert done.returncode == 0, done.stdout + done.stderr.encode()
    assert b"intact: 60 records" in done.stdout

    producer.produce(topic, key=b"SYI", value=lines(demo_index)[61])  # skips record 61
    assert producer.flush(60) == 0
    broken = syi("verify", "--topic", topic, "--bootstrap", bootstrap)
    assert broken.returncode == 1 and b"partition 0 offset 60" in broken.stdout


def unixfs_file_node(data: bytes) -> bytes:
    """The dag-pb node `ipfs add` makes for a one-chunk file: PBNode{Data: UnixFS{Type: File, Data, filesize}}."""
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    unixfs = b"\x08\x02" + b"\x12" + varint(len(data)) + data + b"\x18" + varint(len(data))
    return b"\x0a" + varint(len(unixfs)) + unixfs


def ipfs_cid_tool() -> str:
    tool = shutil.which("ipfs_cid") or shutil.which("ipfs-cid")
    if tool is None:
        pytest.skip("Debian's ipfs-cid is not installed (scripts/setup.sh --test-tools: apt-get install ipfs-cid)")
    return tool


def test_record_cid_agrees_with_the_ipfs_cid_tool(demo_index: Path, tmp_path: Path) -> None:
    """The independent tool hashes files as UnixFS dag-pb nodes (`bafybei...`); our CIDs are raw-codec
    (`bafkrei...`) over the same bytes. Both must carry sha2-256 of those bytes in the same CIDv1 layout."""
    tool = ipfs_cid_tool()
    record = orjson.loads(lines(demo_index)[0])
    body = {k: v for k, v in record.items() if k not in NOT_HASHED}  # locator fields and the cid itself
    hashed = hashed_bytes(body)  # the canonical form of the record's cid_recipe (RFC 8785)
    assert record["cid_recipe"] == "jcs-sha256-cidv1-raw" and hashed.startswith(b'{"bucket_end":')
    (tmp_path / "record.json").write_bytes(hashed)

    output = subprocess.run([tool, str(tmp_path / "record.json")], capture_output=True, text=True, timeout=60, check=True)
    tool_cid = orjson.loads(output.stdout[output.stdout.index("{"):output.stdout.rindex("}") + 1])["CIDv1"]

    # Decode both CIDs by hand (RFC 4648 base32, multibase prefix "b"): version, codec, sha2-256, 32 bytes.
    def decode(text: str) -> bytes:
        assert text[0] == "b"
        body32 = text[1:].upper()
        return base64.b32decode(body32 + "=" * (-len(body32) % 8))

    ours, theirs = decode(record["cid"]), decode(tool_cid)
    assert ours[:4] == b"\x01\x55\x12\x20" and ours[4:] == hashlib.sha256(hashed).digest()  # CIDv1 raw sha2-256
    assert theirs[:4] == b"\x01\x70\x12\x20" and theirs[4:] == hashlib.sha256(unixfs_file_node(hashed)).digest()
    # The multiformats library (behind our CIDs) encodes the tool's CID identically from the same digest.
    assert str(CID("base32", 1, "dag-pb", ("sha2-256", theirs[4:]))) == tool_cid
    assert str(CID("base32", 1, "raw", ("sha2-256", hashlib.sha256(hashed).digest()))) == record["cid"]


# Revisions: corrections appended to the chain as syi-calc publishes them (each re-linked and its
# cid recomputed, the producer's job), then tampered with.

def rechained(records: list[dict], last_cid: str | None) -> list[dict]:
    out = []
    for record in records:
        record = {**record, "prev_cid": last_cid}
        record["cid"] = last_cid = record_cid_of(record)
        out.append(record)
    return out


def corrected(of: dict, syi_decimal: float, reason: str | None = "a late DAI order book") -> dict:
    return {**of, "syi_decimal": syi_decimal, "revision": of["revision"] + 1, "supersedes_cid": of["cid"],
            "restatement_reason": reason, "published_at": "2026-11-21T09:00:00.000Z"}


def verify_records(records: list[dict]) -> verify.ChainReport:
    return verify.verify_chain((f"line {n}", r) for n, r in enumerate(records, start=1))


@pytest.fixture(scope="module")
def with_revisions(demo_index: Path) -> list[dict]:
    """The demo chain plus: bucket 6 restated twice, bucket 3 once (lines 391, 392, 393)."""
    records = [orjson.loads(line) for line in lines(demo_index)]
    (first,) = rechained([corrected(records[5], 0.05)], records[-1]["cid"])
    (second,) = rechained([corrected(first, 0.051, "methodology 3.0.1")], first["cid"])
    (third,) = rechained([corrected(records[2], 0.049)], second["cid"])
    return [*records, first, second, third]


def test_verify_passes_a_chain_with_revisions(with_revisions: list[dict], tmp_path: Path) -> None:
    report = verify_records(with_revisions)
    assert report.intact and (report.records, report.revisions) == (393, 3)
    assert report.last_bucket == "2026-11-20T06:30:00.000Z"  # the newest bucket, not the last restated one
    done = syi("verify", str(write(tmp_path / "revised.jsonl", [orjson.dumps(r) for r in with_revisions])))
    assert done.returncode == 0 and "intact: 393 records" in done.stdout.decode(), done.stdout


@pytest.mark.parametrize(
    ("name", "tamper", "line", "reason"),
    [
        ("no reason", lambda rs: rs[390].update(restatement_reason=None), 391, "without a restatement_reason"),
        ("blank reason", lambda rs: rs[390].update(restatement_reason="  "), 391, "without a restatement_reason"),
        ("reason on revision 0", lambda rs: rs[7].update(restatement_reason="why not"), 8,
         "revision 0 with restatement_reason"),
        ("supersedes on revision 0", lambda rs: rs[7].update(supersedes_cid=rs[6]["cid"]), 8,
         "revision 0 with supersedes_cid"),
        ("supersedes another bucket", lambda rs: rs[390].update(supersedes_cid=rs[4]["cid"]), 391,
         "the bucket's latest record (line 6)"),
        ("supersedes an older revision", lambda rs: rs[391].update(supersedes_cid=rs[5]["cid"]), 392,
         "revision 1 with cid"),
        ("skipped revision", lambda rs: rs[390].update(revision=2), 391, "revision 2 supersedes"),
        ("a second revision 0", lambda rs: rs[390].update(revision=0, supersedes_cid=None, restatement_reason=None),
         391, "already published (line 6)"),
        ("revision of an unpublished bucket", lambda rs: rs[392].update(bucket_end="2026-11-21T00:00:00.000Z"), 393,
         "no earlier record"),
    ],
)
def test_verify_finds_broken_revision_links(with_revisions: list[dict], name, tamper, line, reason) -> None:
    records = [dict(r) for r in with_revisions]
    tamper(records)
    at = line - 1
    records[at:] = rechained(records[at:], records[at - 1]["cid"])  # a forger re-links everything after
    report = verify_records(records)
    assert report.broken is not None and report.broken.where == f"line {line}", (name, report.broken)
    assert reason in report.broken.reason, (name, report.broken.reason)


def test_the_chain_holds_across_revisions(with_revisions: list[dict], tmp_path: Path) -> None:
    records = with_revisions
    changed = {**records[391], "restatement_reason": "another story"}  # a reason rewritten afterwards
    cases = {
        "changed reason": (records[:391] + [changed] + records[392:], 392, "cid mismatch"),
        "revision removed": (records[:390] + records[391:], 391, "a record is missing"),
        "revisions swapped": (records[:390] + [records[391], records[390], records[392]], 391, "a record is missing"),
    }
    for name, (copy, line, reason) in cases.items():
        report = verify_records(copy)
        assert report.broken is not None and report.broken.where == f"line {line}", (name, report.broken)
        assert reason in report.broken.reason, (name, report.broken.reason)
    removed = [orjson.dumps(r) for r in cases["revision removed"][0]]
    done = syi("verify", str(write(tmp_path / "removed.jsonl", removed)))
    assert done.returncode == 1 and "line 391" in done.stdout.decode()
