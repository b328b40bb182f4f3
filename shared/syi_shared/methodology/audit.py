"""Content identifiers of the audit chain: CIDv1, raw codec, sha2-256, base32 ('bafkrei…').

A record's `cid_recipe` names the canonical JSON form its `cid` and `input_cid` hash
(docs/audit.md, step by step): RFC 8785 (JCS) for new records; records without the field
were made with the original recipe (orjson, sorted keys, no whitespace) and keep verifying.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from multiformats import CID, multihash
from pydantic import BaseModel

from syi_shared.models import IndexValue
from syi_shared.serde import canonical_json, sorted_json

JCS_RECIPE = "jcs-sha256-cidv1-raw"
# Never written: a record without `cid_recipe` was made with it.
ORIGINAL_RECIPE = "sorted-json-sha256-cidv1-raw"
# What new records are made with.
RECIPE = JCS_RECIPE
_CANONICAL_FORMS: dict[str, Callable[[Any], bytes]] = {JCS_RECIPE: canonical_json, ORIGINAL_RECIPE: sorted_json}


class UnknownRecipe(ValueError):
    """A `cid_recipe` this code does not know (a newer recipe, or a damaged record)."""

# Locator fields say where and when a record was made, not what it says (docs/topics.md): they
# differ between a live run and a replay, so no hash covers them.
LOCATOR_FIELDS = ("published_at", "input_offsets", "close_notes")
# Fields left out of a record's own cid.
NOT_HASHED = (*LOCATOR_FIELDS, "cid")
_LOCATORS = set(LOCATOR_FIELDS)


def cid_of_reference(data: bytes) -> str:
    """The CID built entirely by the multiformats library (slow: it type-checks every call)."""
    return str(CID("base32", 1, "raw", multihash.digest(data, "sha2-256")))


# Binary CID = <version 1><codec raw><multihash sha2-256 code><length 32> + digest; the header
# is taken from multiformats once, so the per-record work is one sha256 and one base32 pass
# (a 30-day replay hashes ~86 000 records). Tests check both paths agree.
_HEADER = bytes(CID.decode(cid_of_reference(b"")))[:4]
if _HEADER != bytes([0x01, 0x55, 0x12, 0x20]):  # CIDv1, raw, sha2-256, 32 bytes
    raise RuntimeError(f"unexpected CID header {_HEADER.hex()} from multiformats")


def cid_of(data: bytes) -> str:
    """CIDv1 (raw, sha2-256) of `data` in multibase base32: 'b' + lower-case RFC 4648, no padding."""
    encoded = base64.b32encode(_HEADER + hashlib.sha256(data).digest())
    return "b" + encoded.decode("ascii").lower().rstrip("=")


def input_entry(topic: str, value: BaseModel) -> dict[str, Any]:
    """One input of the canonical input set: tape-shaped {topic, key, value}, locators left out."""
    return {"topic": topic, "key": value.key(), "value": value.model_dump(mode="json", exclude=_LOCATORS)}  # type: ignore[attr-defined]


def input_document(inputs: Iterable[tuple[str, BaseModel]]) -> list[dict[str, Any]]:
    """The canonical input set: its entries sorted by (topic, key)."""
    entries = [input_entry(topic, value) for topic, value in inputs]
    entries.sort(key=lambda entry: (entry["topic"], entry["key"]))
    return entries


def canonical_form(recipe: str) -> Callable[[Any], bytes]:
    """The canonical JSON serialiser a recipe names."""
    try:
        return _CANONICAL_FORMS[recipe]
    except KeyError:
        raise UnknownRecipe(f"unknown cid_recipe {recipe!r} (known: {', '.join(sorted(_CANONICAL_FORMS))})") from None


def recipe_of(record: BaseModel | dict[str, Any]) -> str:
    """The recipe a record names; the original one when it names none."""
    recipe = getattr(record, "cid_recipe", None) if isinstance(record, BaseModel) else record.get("cid_recipe")
    if recipe is None:
        return ORIGINAL_RECIPE
    if not isinstance(recipe, str):
        raise UnknownRecipe(f"cid_recipe must be a string, got {recipe!r}")
    canonical_form(recipe)
    return recipe


def input_cid(inputs: Iterable[tuple[str, BaseModel]], recipe: str = RECIPE) -> str:
    """CID of the canonical JSON (in `recipe`'s form) of exactly the inputs a bucket used."""
    return cid_of(canonical_form(recipe)(input_document(inputs)))


class InputHasher:
    """`input_cid` bucket after bucket: an input used again (a market cap for half an hour,
    the T-bill for a day) is put in canonical form once. Canonical JSON of a list is its
    items' canonical forms joined, so the document is assembled from the entries' bytes."""

    def __init__(self, recipe: str = RECIPE) -> None:
        self.form = canonical_form(recipe)
        # id(value) -> (value, topic, key, canonical entry); holding the value keeps its id its own
        self.known: dict[int, tuple[BaseModel, str, str, bytes]] = {}

    def input_cid(self, inputs: Iterable[tuple[str, BaseModel]]) -> str:
        known, used = self.known, {}
        entries = []
        for topic, value in inputs:
            entry = known.get(id(value))
            if entry is None or entry[0] is not value or entry[1] != topic:
                document = input_entry(topic, value)
                entry = (value, topic, document["key"], self.form(document))
            used[id(value)] = entry
            entries.append(entry)
        self.known = used  # what this bucket used: bounded by one bucket's inputs
        entries.sort(key=lambda entry: (entry[1], entry[2]))  # input_document's order
        return cid_of(b"[" + b",".join(entry[3] for entry in entries) + b"]")


def hashed_bytes(record: dict[str, Any]) -> bytes:
    """The bytes a record's cid hashes: the record WITHOUT its locator fields and cid, in the
    canonical form of the recipe it names (`cid_recipe` is itself part of them)."""
    present = [name for name in NOT_HASHED if name in record]
    if present:
        raise ValueError(f"drop {present} first (they are not hashed)")
    return canonical_form(recipe_of(record))(record)


def record_cid(record: dict[str, Any]) -> str:
    """CID of a syi.calculated record given as a dict WITHOUT its locator fields and cid."""
    return cid_of(hashed_bytes(record))


def record_cid_of(value: BaseModel | dict[str, Any]) -> str:
    """CID of a whole record (model or dict): drops the locator fields and cid, then hashes."""
    body = value.model_dump(mode="json") if isinstance(value, BaseModel) else dict(value)
    for name in NOT_HASHED:
        body.pop(name, None)
    return record_cid(body)


def restate(corrected: IndexValue, superseded: IndexValue, reason: str) -> IndexValue:
    """A correction of a published bucket (docs/methodology.md §9): a NEW record, never an overwrite.

    `corrected` is the recomputed value for the same bucket; it gets revision + 1, a
    reference to the cid it supersedes, the operator's `reason`, and a fresh cid. Its prev_cid
    stays what it was given (syi-calc chains a revision to the topic's tip before this).
    """
    if corrected.bucket_end != superseded.bucket_end or corrected.index_id != superseded.index_id:
        raise ValueError(f"a restatement must be for the same bucket: {corrected.bucket_end} vs {superseded.bucket_end}")
    return revised(corrected, superseded.revision + 1, superseded.cid, reason)


def revised(corrected: IndexValue, revision: int, supersedes_cid: str, reason: str) -> IndexValue:
    """`corrected` as revision `revision` superseding `supersedes_cid`, with its reason and cid."""
    if revision < 1:
        raise ValueError(f"a revision is numbered from 1, got {revision}")
    if not reason.strip():
        raise ValueError("a restatement must say why (blank reason)")
    value = corrected.model_copy(update={
        "revision": revision, "supersedes_cid": supersedes_cid, "restatement_reason": reason,
    })
    return value.model_copy(update={"cid": record_cid_of(value)})
