"""`syi restate`: recompute an interval, compare it with what was published, and ask syi-calc to
publish a revision where the restatement policy says the change is material (docs/methodology.md §9).

The comparison is a pure function (`plan`); reading the topic and submitting the requests are the
thin I/O around it. syi-calc is the only producer of `syi.calculated`: this command never writes
there, it submits one request per material bucket to `syi.restatements` and syi-calc chains and
publishes the revision in its own transaction (docs/topics.md, "Revisions").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from syi_shared.models import IndexValue

BP = 1e4  # basis points per unit of a decimal rate


@dataclass(frozen=True)
class Change:
    """One bucket of the interval: what is published, what the recomputation gives, and why it is
    material (an empty `reasons`: not material, nothing is published for it)."""

    bucket_end: str
    old: dict[str, Any] | None  # the latest published revision; None: never published
    new: IndexValue
    delta_bp: float | None
    reasons: tuple[str, ...]

    @property
    def material(self) -> bool:
        return self.old is not None and bool(self.reasons)


def included(record: dict[str, Any]) -> set[str]:
    return {c["symbol"] for c in record["constituents"] if c.get("excluded_reason") is None}


def plan(recomputed: Iterable[IndexValue], published: dict[str, dict[str, Any]], materiality_bp: float) -> list[Change]:
    """Compare each recomputed bucket with its latest published revision (`published`: bucket_end ->
    record). Material: |Δ syi_decimal| ≥ `materiality_bp` basis points, another `status`, or another
    set of included constituents."""
    changes = []
    for value in recomputed:
        old = published.get(value.bucket_end)
        if old is None:
            changes.append(Change(value.bucket_end, None, value, None, ("not published",)))
            continue
        delta = (value.syi_decimal - old["syi_decimal"]) * BP
        reasons = []
        if abs(delta) >= materiality_bp:
            reasons.append(f"Δ {delta:+.3f} bp ≥ {materiality_bp:g} bp")
        if value.status != old["status"]:
            reasons.append(f"status {old['status']} → {value.status}")
        before, after = included(old), included(value.model_dump(mode="json"))
        if before != after:
            moved = [f"+{s}" for s in sorted(after - before)] + [f"-{s}" for s in sorted(before - after)]
            reasons.append(f"constituents {' '.join(moved)}")
        changes.append(Change(value.bucket_end, old, value, delta, tuple(reasons)))
    return changes


def latest_revisions(raw_records: Iterable[bytes], first: str, last: str) -> dict[str, dict[str, Any]]:
    """bucket_end -> its latest revision on the topic, for the buckets in [first, last]."""
    latest: dict[str, dict[str, Any]] = {}
    for raw in raw_records:
        record = orjson.loads(raw)
        bucket = record["bucket_end"]
        if first <= bucket <= last and record.get("revision", 0) >= latest.get(bucket, {}).get("revision", -1):
            latest[bucket] = record
    return latest
