"""`syi verify`: recompute the audit chain of published index values.

Every record's `cid` is recomputed with the recipe its `cid_recipe` names (docs/audit.md:
the canonical JSON of the record minus its locator fields and `cid`; records without the
field use the original recipe), every `prev_cid` must be the previous record's `cid` (null
on the first, whatever the bucket or revision) and every revision must supersede its bucket's
latest record and say why (`restatement_reason`). The first break
is reported with where it is and what differs. `input_cid` needs the inputs themselves and
is checked by recomputing the tape (`syi compute`), not here. examples/verify_records.py
makes the same checks without this project's code.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from syi_shared.methodology.audit import ORIGINAL_RECIPE, UnknownRecipe, record_cid_of
from syi_shared.settings import ServiceSettings
from syi_shared.topics import SYI_CALCULATED

from syi_cli.tape import open_binary

SYI_TOPIC = SYI_CALCULATED

Record = tuple[str, dict[str, Any] | str]  # (where, the record, or why it could not be read)


@dataclass(frozen=True)
class Break:
    where: str   # "line 12" or "partition 0 offset 11"
    bucket_end: str | None
    reason: str

    def __str__(self) -> str:
        bucket = f" (bucket {self.bucket_end})" if self.bucket_end else ""
        return f"{self.where}{bucket}: {self.reason}"


@dataclass(frozen=True)
class Revision:
    where: str
    revision: Any
    cid: str


@dataclass(frozen=True)
class ChainReport:
    records: int
    first_bucket: str | None
    last_bucket: str | None
    last_cid: str | None
    broken: Break | None
    revisions: int = 0  # records with revision >= 1 (corrections) among `records`

    @property
    def intact(self) -> bool:
        return self.broken is None and self.records > 0


def records_in_file(path: Path) -> Iterator[Record]:
    """Lines of `syi compute` output, or a tape (its `syi.calculated` lines; others skipped)."""
    with open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            record = _json_object(raw)
            if isinstance(record, dict) and "topic" in record and "value" in record:  # a tape line
                if record["topic"] != SYI_TOPIC:
                    continue
                record = _object_or_reason(record["value"])
            yield f"line {number}", record


def records_on_topic(settings: ServiceSettings, topic: str = SYI_TOPIC, since_ms: int | None = None) -> Iterator[Record]:
    """Every committed record in the topic (appended since `since_ms`, Kafka time, when given), in
    partition/offset order (the index topic has one partition)."""
    from syi_shared.kafka import read_to_end

    messages = sorted(read_to_end([topic], settings, since_ms=since_ms), key=lambda m: (m.partition(), m.offset()))
    for message in messages:
        yield f"partition {message.partition()} offset {message.offset()}", _json_object(message.value())


def _json_object(raw: bytes | None) -> dict[str, Any] | str:
    """The JSON object in `raw`, or why there is none (a null message value is a TypeError)."""
    try:
        return _object_or_reason(orjson.loads(raw))  # type: ignore[arg-type]
    except (orjson.JSONDecodeError, TypeError) as exc:
        return f"invalid JSON ({exc})"


def _object_or_reason(data: Any) -> dict[str, Any] | str:
    return data if isinstance(data, dict) else "expected a JSON object"


def verify_chain(records: Iterable[Record]) -> ChainReport:
    """Walk the records in order; stop at the first broken link."""
    count = 0
    first_bucket: str | None = None
    last_bucket: str | None = None
    previous: tuple[str, str] | None = None  # (where, cid) of the last good record
    seen: dict[str, str] = {}  # cid -> where, to explain a link that skips or goes backwards
    latest: dict[tuple[Any, Any], Revision] = {}  # (index_id, bucket_end) -> its latest record
    revisions = 0
    for where, record in records:
        bucket = None if isinstance(record, str) else record.get("bucket_end")
        bucket = bucket if isinstance(bucket, str) else None
        problem = record if isinstance(record, str) else (
            _check(record, previous, seen) or _check_revision(record, latest))
        if problem is not None:
            broken = Break(where, bucket, problem)
            return ChainReport(count, first_bucket, last_bucket, previous and previous[1], broken, revisions)
        count += 1
        first_bucket = first_bucket or bucket
        # a restatement of an older bucket may come last: the range ends at the newest bucket
        last_bucket = bucket if last_bucket is None or (bucket is not None and bucket > last_bucket) else last_bucket
        revisions += record.get("revision", 0) != 0  # type: ignore[union-attr]
        previous = (where, record["cid"])  # type: ignore[index]
        seen[record["cid"]] = where  # type: ignore[index]
        latest[(record.get("index_id"), record.get("bucket_end"))] = Revision(  # type: ignore[union-attr]
            where, record.get("revision", 0), record["cid"])  # type: ignore[union-attr,index]
    return ChainReport(count, first_bucket, last_bucket, previous[1] if previous else None, None, revisions)


def _check(record: dict[str, Any], previous: tuple[str, str] | None, seen: dict[str, str]) -> str | None:
    recorded = record.get("cid")
    if not isinstance(recorded, str):
        return "no cid"
    try:
        recomputed = record_cid_of(record)
    except UnknownRecipe as exc:
        return str(exc)
    except ValueError as exc:  # content no canonical form can write, e.g. an integer beyond 2**53
        return f"cannot canonicalise the record ({exc})"
    if recomputed != recorded:
        return (f"cid mismatch: the record says {recorded} but its content hashes to {recomputed} "
                f"(recipe {record.get('cid_recipe') or ORIGINAL_RECIPE}): the record was changed after it was published")
    link = record.get("prev_cid")
    if previous is None:
        if link is not None:
            return f"prev_cid is {link} on the first record (a chain starts with null: records before it are missing)"
        return None
    if link == previous[1]:
        return None
    if link is None:
        return f"prev_cid is null but the previous record ({previous[0]}) has cid {previous[1]}"
    if link in seen:
        return (f"prev_cid links to the record at {seen[link]}, not to the previous record ({previous[0]}, "
                f"cid {previous[1]}): records were reordered or duplicated")
    return (f"prev_cid {link} is the cid of no record before it; the previous record ({previous[0]}) "
            f"has cid {previous[1]}: a record is missing or was replaced")


def _check_revision(record: dict[str, Any], latest: dict[tuple[Any, Any], Revision]) -> str | None:
    """Revision 0 is a bucket's first record, supersedes nothing and has no reason; revision n
    supersedes the bucket's latest record, which has revision n - 1, and says why in
    `restatement_reason` (docs/methodology.md §9)."""
    revision, supersedes = record.get("revision", 0), record.get("supersedes_cid")
    reason = record.get("restatement_reason")  # absent on records made before restatements: null
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
        return f"revision must be an integer >= 0, got {revision!r}"
    before = latest.get((record.get("index_id"), record.get("bucket_end")))
    if revision == 0:
        if supersedes is not None:
            return f"revision 0 with supersedes_cid {supersedes} (only a correction supersedes a record)"
        if reason is not None:
            return f"revision 0 with restatement_reason {reason!r} (only a correction has a reason)"
        if before is not None:
            return f"the bucket was already published ({before.where}): a duplicate (a correction has revision >= 1)"
        return None
    if not isinstance(reason, str) or not reason.strip():
        return f"revision {revision} without a restatement_reason (got {reason!r}): a correction must say why"
    if before is None:
        return f"revision {revision} of a bucket with no earlier record"
    if supersedes != before.cid or revision != before.revision + 1:
        return (f"revision {revision} supersedes {supersedes}, but the bucket's latest record ({before.where}) is "
                f"revision {before.revision} with cid {before.cid}")
    return None
