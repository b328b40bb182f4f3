#!/usr/bin/env python3
"""Verify published StableYield Index records without the project's code.

Needs only Python 3.9+ and the `rfc8785` package (pip install rfc8785==0.1.4). Reads
`syi.calculated` records, one JSON object per line (`syi compute` output, or a dump of the
topic such as `kcat -C -t syi.calculated -e -q`), from a file or from standard input, and
checks in order, stopping at the first bad record:

1. its `cid`: recomputed with the recipe its `cid_recipe` names (docs/audit.md);
2. the chain: `prev_cid` is the `cid` of the record before it (null on the first);
3. the revision links: revision 0 has `supersedes_cid` and `restatement_reason` null and is
   the bucket's first record; revision n > 0 supersedes the bucket's latest record, which has
   revision n - 1, and has a non-empty `restatement_reason`.

Exit status 0 when every record holds, 1 naming the first bad record, 2 when the input
cannot be read. `input_cid` is not checked: it needs the inputs themselves.

    python verify_records.py syi.jsonl
    syi compute --tape demo.jsonl.gz | python verify_records.py
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import math
import sys
from decimal import Decimal
from typing import IO, Any, Dict, Iterator, List, Optional, Tuple

import rfc8785

TOPIC = "syi.calculated"
# Where and when a record was made, not what it says; and the cid itself. No hash covers them.
NOT_HASHED = ("cid", "published_at", "input_offsets", "close_notes")
JCS_RECIPE = "jcs-sha256-cidv1-raw"
ORIGINAL_RECIPE = "sorted-json-sha256-cidv1-raw"  # implied when a record has no cid_recipe
# CIDv1 (0x01), raw codec (0x55), sha2-256 (0x12), 32-byte digest (0x20).
CID_HEADER = bytes([0x01, 0x55, 0x12, 0x20])


class BadRecord(Exception):
    """Why a record does not verify."""


def cid_of(data: bytes) -> str:
    """CIDv1, raw codec, sha2-256, in multibase base32: 'b' + lower-case RFC 4648, no padding."""
    encoded = base64.b32encode(CID_HEADER + hashlib.sha256(data).digest())
    return "b" + encoded.decode("ascii").lower().rstrip("=")


def jcs_json(value: Any) -> bytes:
    """Recipe jcs-sha256-cidv1-raw: RFC 8785."""
    return rfc8785.dumps(value)


def original_json(value: Any) -> bytes:
    """Recipe sorted-json-sha256-cidv1-raw: sorted keys, no whitespace, UTF-8, numbers as below."""
    return _original(value).encode("utf-8")


def _original(value: Any) -> str:
    if isinstance(value, dict):
        items = sorted(value.items())  # by code point, which is also UTF-8 byte order
        return "{" + ",".join(_string(key) + ":" + _original(item) for key, item in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_original(item) for item in value) + "]"
    if isinstance(value, float):
        return original_number(value)
    if isinstance(value, str):
        return _string(value)
    return json.dumps(value)  # null, true, false, integers


def _string(text: str) -> str:
    # Escapes only '"', '\\' and U+0000..U+001F (\b \t \n \f \r, else \u00xx), the rest as is.
    return json.dumps(text, ensure_ascii=False)


def original_number(number: float) -> str:
    """A float in the original recipe: the shortest digits that read back as the same double
    (as Python's repr), written plainly when 1e-5 <= |x| < 1e16 (with '.0' when integral),
    otherwise as d[.ddd]e+NN / e-NN without leading zeros in the exponent."""
    if not math.isfinite(number):
        raise BadRecord(f"{number} is not a JSON number")
    if number == 0:
        return "-0.0" if math.copysign(1.0, number) < 0 else "0.0"
    sign = "-" if number < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(number))).as_tuple()
    digits = "".join(map(str, digit_tuple))
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)  # value = int(stripped) * 10**exponent
    digits = stripped
    point = len(digits) + exponent  # where the decimal point goes, counted from the first digit
    scientific = point - 1
    if -6 < scientific < 16:
        if point <= 0:
            text = "0." + "0" * -point + digits
        elif point >= len(digits):
            text = digits + "0" * (point - len(digits)) + ".0"
        else:
            text = digits[:point] + "." + digits[point:]
    else:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        text = f"{mantissa}e{'+' if scientific > 0 else '-'}{abs(scientific)}"
    return sign + text


CANONICAL_FORMS = {JCS_RECIPE: jcs_json, ORIGINAL_RECIPE: original_json}


def record_cid(record: Dict[str, Any]) -> str:
    """The cid a record's content hashes to, with the recipe it names."""
    recipe = record.get("cid_recipe", ORIGINAL_RECIPE)
    if recipe not in CANONICAL_FORMS:
        raise BadRecord(f"unknown cid_recipe {recipe!r} (this verifier knows {', '.join(sorted(CANONICAL_FORMS))})")
    body = {key: value for key, value in record.items() if key not in NOT_HASHED}
    try:
        return cid_of(CANONICAL_FORMS[recipe](body))
    except (ValueError, TypeError) as exc:  # e.g. an integer beyond JCS's 2**53
        raise BadRecord(f"cannot canonicalise the record ({exc})") from None


def _no_duplicate_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise BadRecord(f"duplicate key {next(key for key in keys if keys.count(key) > 1)!r}")
    return dict(pairs)


def _not_a_number(name: str) -> Any:
    raise BadRecord(f"{name} is not a JSON number")


def parse(line: str) -> Dict[str, Any]:
    try:
        data = json.loads(line, object_pairs_hook=_no_duplicate_keys, parse_constant=_not_a_number)
    except json.JSONDecodeError as exc:
        raise BadRecord(f"invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BadRecord("expected a JSON object")
    return data


def records(stream: IO[str]) -> Iterator[Tuple[int, Any]]:
    """(line number, record or BadRecord) per non-blank line; tape lines of other topics skipped."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            record = parse(line)
        except BadRecord as exc:
            yield number, exc
            continue
        if "topic" in record and "value" in record and "cid" not in record:  # a tape line
            if record["topic"] != TOPIC:
                continue
            record = record["value"]
            if not isinstance(record, dict):
                yield number, BadRecord("expected a JSON object")
                continue
        yield number, record


class Verifier:
    """Feeds records in publication order; `check` raises BadRecord at the first bad one."""

    def __init__(self) -> None:
        self.count = 0
        self.last_cid: Optional[str] = None
        self.cids: Dict[str, int] = {}  # cid -> line, to explain a link to an older record
        self.latest: Dict[Tuple[Any, Any], Tuple[int, int, str]] = {}  # bucket -> (line, revision, cid)
        self.first_bucket: Optional[str] = None
        self.last_bucket: Optional[str] = None

    def check(self, line: int, record: Dict[str, Any]) -> None:
        recorded = record.get("cid")
        if not isinstance(recorded, str):
            raise BadRecord("no cid")
        computed = record_cid(record)
        if computed != recorded:
            raise BadRecord(f"cid mismatch: the record says {recorded} but its content hashes to {computed} "
                            f"(recipe {record.get('cid_recipe', ORIGINAL_RECIPE)}): it was changed after publication")
        self._check_link(record.get("prev_cid"))
        bucket = (record.get("index_id"), record.get("bucket_end"))
        self._check_revision(bucket, record)
        self.count += 1
        self.last_cid = recorded
        self.cids[recorded] = line
        self.latest[bucket] = (line, record.get("revision", 0), recorded)
        self.first_bucket = self.first_bucket or record.get("bucket_end")
        self.last_bucket = record.get("bucket_end")

    def _check_link(self, link: Any) -> None:
        if self.last_cid is None:
            if link is not None:
                raise BadRecord(f"prev_cid is {link} on the first record: a chain starts with null "
                                "(records before it are missing)")
        elif link != self.last_cid:
            if link in self.cids:
                where = f"links to the record on line {self.cids[link]}, not to the previous one: records were reordered or duplicated"
            elif link is None:
                where = "is null in the middle of the chain"
            else:
                where = "is the cid of no record before it: a record is missing or was replaced"
            raise BadRecord(f"prev_cid {link} {where} (the previous record's cid is {self.last_cid})")

    def _check_revision(self, bucket: Tuple[Any, Any], record: Dict[str, Any]) -> None:
        revision, supersedes = record.get("revision", 0), record.get("supersedes_cid")
        reason = record.get("restatement_reason")
        if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
            raise BadRecord(f"revision must be an integer >= 0, got {revision!r}")
        latest = self.latest.get(bucket)
        if revision == 0:
            if supersedes is not None:
                raise BadRecord(f"revision 0 with supersedes_cid {supersedes} (only a correction supersedes)")
            if reason is not None:
                raise BadRecord(f"revision 0 with restatement_reason {reason!r} (only a correction has a reason)")
            if latest is not None:
                raise BadRecord(f"bucket {bucket[1]} was already published on line {latest[0]}: a duplicate "
                                "(a correction has revision >= 1)")
            return
        if not isinstance(reason, str) or not reason.strip():
            raise BadRecord(f"revision {revision} without a restatement_reason (got {reason!r})")
        if latest is None:
            raise BadRecord(f"revision {revision} of bucket {bucket[1]}, which has no earlier record")
        line, previous, cid = latest
        if supersedes != cid or revision != previous + 1:
            raise BadRecord(f"revision {revision} supersedes {supersedes}, but the bucket's latest record is "
                            f"revision {previous} on line {line} with cid {cid}")


def verify(stream: IO[str], out: IO[str]) -> int:
    verifier = Verifier()
    for line, record in records(stream):
        try:
            if isinstance(record, BadRecord):
                raise record
            verifier.check(line, record)
        except BadRecord as exc:
            bucket = record.get("bucket_end") if isinstance(record, dict) else None
            where = f"line {line}" + (f" (bucket {bucket})" if isinstance(bucket, str) else "")
            out.write(f"BAD {where}, after {verifier.count} good records: {exc}\n")
            return 1
    if not verifier.count:
        out.write("BAD: no records\n")
        return 1
    out.write(f"OK {verifier.count} records, buckets {verifier.first_bucket} .. {verifier.last_bucket}, "
              f"last cid {verifier.last_cid}\n")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Verify syi.calculated records: cids, the prev_cid chain, revisions.")
    parser.add_argument("file", nargs="?", default="-", help="JSON lines (.gz too); standard input when omitted or '-'")
    args = parser.parse_args(argv)
    try:
        if args.file == "-":
            return verify(io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8"), sys.stdout)
        opener = gzip.open if args.file.endswith(".gz") else open
        with opener(args.file, "rt", encoding="utf-8") as stream:
            return verify(stream, sys.stdout)
    except (OSError, UnicodeDecodeError) as exc:
        sys.stderr.write(f"cannot read {args.file}: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
