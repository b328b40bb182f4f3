"""Content identifiers: our fast path, the multiformats library, and Debian's ipfs-cid agree; the
recipe a record names (RFC 8785 now, the original sorted-keys form before it) is the one hashed."""

from __future__ import annotations

import base64
import hashlib
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from multiformats import CID, multihash

import orjson
import rfc8785

from syi_shared.methodology import audit
from syi_shared.methodology.audit import (
    JCS_RECIPE,
    ORIGINAL_RECIPE,
    RECIPE,
    UnknownRecipe,
    cid_of,
    cid_of_reference,
    hashed_bytes,
    input_cid,
    input_document,
    record_cid,
    record_cid_of,
)
from syi_shared.models import IndexValue
from syi_shared.serde import canonical_json, dumps, sorted_json
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


@pytest.mark.parametrize("recipe", [JCS_RECIPE, ORIGINAL_RECIPE])
def test_the_input_hasher_equals_input_cid_bucket_after_bucket(recipe: str) -> None:
    # The engine's InputHasher keeps the canonical form of an input used again; its cids must
    # be input_cid's whatever is reused, replaced, reordered or dropped.
    hasher = audit.InputHasher(recipe)
    usdc, usdt, bill = mktcap("USDC", 7.5e10, T0), mktcap("USDT", 1.2e11, T0), tbill(4.12, T0)
    buckets = [
        [("ex.mktcap", usdc), ("trad.tbill", bill)],
        [("trad.tbill", bill), ("ex.mktcap", usdc), ("ex.mktcap", usdt)],  # reused, reordered, one new
        [("ex.mktcap", mktcap("USDC", 7.6e10, T0 + 60_000)), ("trad.tbill", bill)],  # a newer USDC cap
        [("ex.mktcap", usdt)],  # one known one, the rest dropped
        [("ex.mktcap", usdc), ("ex.mktcap", usdt), ("trad.tbill", tbill(-0.0, T0)), ("trad.tbill", bill)],
        [],
    ]
    for inputs in buckets:
        assert hasher.input_cid(inputs) == input_cid(inputs, recipe), inputs
    assert len(hasher.known) == 0  # holds only what the last bucket used


def test_record_cid_excludes_the_locator_fields_and_cid_only() -> None:
    record = {"index_id": "SYI", "syi_decimal": 0.04, "prev_cid": None}
    with pytest.raises(ValueError, match="published_at"):
        record_cid({**record, "published_at": "2026-11-27T10:01:01.000Z"})
    assert record_cid(record) == cid_of(b'{"index_id":"SYI","prev_cid":null,"syi_decimal":0.04}')
    locators = {"published_at": "x", "cid": "y", "input_offsets": {"ray.calculated": {"0": 7}}, "close_notes": ["z"]}
    assert record_cid_of({**record, **locators}) == record_cid(record)
    jcs = {**record, "cid_recipe": JCS_RECIPE}
    assert record_cid_of({**jcs, **locators}) == record_cid(jcs)


# RFC 8785 appendix B: IEEE 754 bits (hex) -> the number's canonical text.
JCS_NUMBERS = [
    ("0000000000000000", "0"), ("8000000000000000", "0"), ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"), ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"), ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"), ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"), ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"), ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"), ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"), ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"), ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"), ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"), ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), JCS_NUMBERS)
def test_canonical_json_writes_numbers_as_rfc_8785_appendix_b(bits: str, text: str) -> None:
    number = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert canonical_json(number) == text.encode()


@pytest.mark.parametrize(("value", "jcs", "original"), [
    (1e-7, b"1e-7", b"1e-7"),
    (1e-5, b"0.00001", b"0.00001"),
    (1.0, b"1", b"1.0"),
    (1e16, b"10000000000000000", b"1e+16"),
    (1.2e11, b"120000000000", b"120000000000.0"),
    ({"b": 1, "a": "\u00e9\n"}, '{"a":"\u00e9\\n","b":1}'.encode(), '{"a":"\u00e9\\n","b":1}'.encode()),
])
def test_the_two_canonical_forms_differ_in_numbers_only(value: object, jcs: bytes, original: bytes) -> None:
    assert (canonical_json(value), sorted_json(value)) == (jcs, original)


def test_a_record_is_hashed_with_the_recipe_it_names() -> None:
    body = {"index_id": "SYI", "syi_decimal": 1e-7, "hhi": 5000.0, "prev_cid": None}
    assert hashed_bytes(body) == orjson.dumps(body, option=orjson.OPT_SORT_KEYS)  # no cid_recipe: the original
    named = {**body, "cid_recipe": JCS_RECIPE}
    assert hashed_bytes(named) == rfc8785.dumps(named) == (
        b'{"cid_recipe":"jcs-sha256-cidv1-raw","hhi":5000,"index_id":"SYI","prev_cid":null,"syi_decimal":1e-7}')
    assert record_cid(named) == cid_of(rfc8785.dumps(named))
    assert record_cid({**body, "cid_recipe": ORIGINAL_RECIPE}) == cid_of(sorted_json({**body, "cid_recipe": ORIGINAL_RECIPE}))
    for bad in ("jcs-sha512", "", 3):
        with pytest.raises(UnknownRecipe):
            record_cid({**body, "cid_recipe": bad})
    assert RECIPE == JCS_RECIPE


def test_input_cid_is_computed_in_the_form_of_the_recipe() -> None:
    inputs = [("ex.mktcap", mktcap("USDC", 7.5e10, T0)), ("trad.tbill", tbill(4.12, T0))]
    document = input_document(inputs)
    assert input_cid(inputs) == input_cid(inputs, JCS_RECIPE) == cid_of(rfc8785.dumps(document))
    assert input_cid(inputs, ORIGINAL_RECIPE) == cid_of(orjson.dumps(document, option=orjson.OPT_SORT_KEYS))
    with pytest.raises(UnknownRecipe):
        input_cid(inputs, "md5")


def test_the_engine_names_its_recipe_and_hashes_inputs_and_record_with_it() -> None:
    from syi_shared.methodology import compute_run, load_methodology
    from tests.shared.methodology.builders import caps_at, healthy, positioned, published

    messages = caps_at(T0 + 100) + [m for s in ("USDT", "USDC", "DAI") for m in healthy(s, T0 + 1000)]
    _, (value,) = compute_run(positioned(messages), load_methodology(), published)
    assert value.cid_recipe == JCS_RECIPE
    record = orjson.loads(dumps(value))
    body = {key: item for key, item in record.items() if key not in audit.NOT_HASHED}
    assert value.cid == cid_of(rfc8785.dumps(body)) == record_cid_of(record) == record_cid_of(value)


ORIGINAL_RECORDS = Path(__file__).parents[2] / "fixtures" / "audit" / "original-recipe.jsonl"


def test_records_without_a_recipe_reserialise_and_verify_as_published() -> None:
    # Records made before cid_recipe existed: the original recipe, and no `cid_recipe` key added.
    lines = ORIGINAL_RECORDS.read_bytes().splitlines()
    for line in lines:
        value = IndexValue.model_validate_json(line)
        assert value.cid_recipe is None and "cid_recipe" not in value.model_dump(mode="json")
        assert dumps(value) == line
        assert record_cid_of(value) == record_cid_of(orjson.loads(line)) == value.cid


def test_a_degraded_copy_keeps_the_recipe_of_the_value_it_copies() -> None:
    # Its input_cid is the copied value's, so its cid must be made with the same recipe.
    from syi_shared.methodology import IndexEngine, load_methodology
    from syi_shared.methodology.degraded import degraded_index

    old = IndexValue.model_validate_json(ORIGINAL_RECORDS.read_bytes().splitlines()[-1])
    for last in (old, old.model_copy(update={"cid_recipe": JCS_RECIPE})):
        engine = IndexEngine(load_methodology())
        copy = degraded_index(engine, T0 + 2 * 60_000, "boom", last, "2026-11-27T10:02:01.000Z")
        assert copy is not None and copy.cid_recipe == last.cid_recipe and copy.input_cid == last.input_cid
        assert copy.cid == record_cid_of(copy) == record_cid_of(orjson.loads(dumps(copy)))
