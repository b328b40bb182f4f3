"""Content identifiers: our fast path, the multiformats library, and Debian's ipfs-cid agree."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from multiformats import CID, multihash

from syi_shared.methodology.audit import cid_of, cid_of_reference, input_cid, input_document, record_cid, record_cid_of
from syi_shared.serde import canonical_json
from tests.shared.methodology.builders import T0, mktcap, tbill


def test_cid_is_cidv1_raw_sha256_base32() -> None:
    data = b'{"a":1}'
    by_hand = "b" + base64.b32encode(bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest()).decode().lower().rstrip("=")
    assert cid_of(data) == by_hand == cid_of_reference(data)
    assert cid_of(data).startswith("bafkrei") and len(cid_of(data)) == 59
    decoded = CID.decode(cid_of(data))
    assert (decoded.version, decoded.codec.name, decoded.hashfun.name, decoded.raw_digest) == (1, "raw", "sha2-256", hashlib.sha256(data).digest())


@pytest.mark.parametrize("size", [0, 1, 31, 32, 33, 1000, 70_000])
def test_fast_path_matches_multiformats(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert cid_of(data) == cid_of_reference(data)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@pytest.mark.skipif(shutil.which("ipfs_cid") is None, reason="Debian package ipfs-cid not installed")
def test_independent_tool_agrees_on_the_hash_and_encoding(tmp_path: Path) -> None:
    # ipfs_cid hashes a file as a one-block UnixFS dag-pb node; build the same node from the
    # canonical JSON of an input set and let multiformats name it: the two CIDs must match.
    data = canonical_json(input_document([("ex.mktcap", mktcap("USDC", 7.5e10, T0)), ("trad.tbill", tbill(4.12, T0))]))
    unixfs = b"\x08\x02" + b"\x12" + _varint(len(data)) + data + b"\x18" + _varint(len(data))
    node = b"\x0a" + _varint(len(unixfs)) + unixfs
    ours = str(CID("base32", 1, "dag-pb", multihash.digest(node, "sha2-256")))
    file = tmp_path / "inputs.json"
    file.write_bytes(data)
    output = subprocess.run(["ipfs_cid", str(file)], capture_output=True, text=True, check=True, timeout=60).stdout
    assert f'"CIDv1":"{ours}"' in output
    # Same digest machinery, raw codec: what the audit chain publishes.
    assert cid_of(data) == str(CID("base32", 1, "raw", multihash.digest(data, "sha2-256")))


def test_input_cid_is_canonical_and_order_free() -> None:
    a, b = ("ex.mktcap", mktcap("USDC", 7.5e10, T0)), ("trad.tbill", tbill(4.12, T0))
    assert input_cid([a, b]) == input_cid([b, a])
    document = input_document([b, a])
    assert [entry["topic"] for entry in document] == ["ex.mktcap", "trad.tbill"]
    assert document[0] == {"topic": "ex.mktcap", "key": "USDC", "value": a[1].model_dump(mode="json")}
    assert input_cid([a, b]) == cid_of(canonical_json(document))
    assert input_cid([a]) != input_cid([a, b])


def test_record_cid_excludes_published_at_and_cid_only() -> None:
    record = {"index_id": "SYI", "syi_decimal": 0.04, "prev_cid": None}
    with pytest.raises(ValueError, match="published_at"):
        record_cid({**record, "published_at": "2026-11-27T10:01:01.000Z"})
    assert record_cid(record) == cid_of(b'{"index_id":"SYI","prev_cid":null,"syi_decimal":0.04}')
    assert record_cid_of({**record, "published_at": "x", "cid": "y"}) == record_cid(record)


def test_restatement_is_a_new_revision_referencing_the_superseded_record() -> None:
    from syi_shared.methodology import compute_run, load_methodology
    from syi_shared.methodology.audit import restate
    from tests.shared.methodology.builders import caps_at, healthy, positioned, published

    messages = caps_at(T0 + 100) + [m for s in ("USDT", "USDC", "DAI") for m in healthy(s, T0 + 1000)]
    _, (original,) = compute_run(positioned(messages), load_methodology(), published)
    fixed = messages + [("ex.mktcap", mktcap("USDC", 9e10, T0 + 200))]  # a corrected input
    _, (recomputed,) = compute_run(positioned(fixed), load_methodology(), published)
    revised = restate(recomputed, original)
    assert (revised.revision, revised.supersedes_cid, revised.bucket_end) == (1, original.cid, original.bucket_end)
    assert revised.cid == record_cid_of(revised) and revised.cid not in (original.cid, recomputed.cid)
    assert restate(recomputed, revised).revision == 2
    with pytest.raises(ValueError, match="same bucket"):
        restate(recomputed.model_copy(update={"bucket_end": "2026-11-27T10:02:00.000Z"}), original)
