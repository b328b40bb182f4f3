"""The two engine adapters the stateful step drives (`streaming.step.Calculator`): ray-calc's
`RayCalculator` and syi-calc's `IndexCalculator`. Every number comes from the engines
(`syi_shared.methodology`); an adapter adds what streaming needs: which bucket a message
belongs to, when a bucket may close, degraded closes, and its state as JSON for checkpoints.

Here rather than in the services so a recomputation (`syi verify --recompute`) runs the very
same code without Bytewax. `metrics` is the service's own metrics object, or None.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from pydantic import BaseModel, ValidationError

from syi_shared.methodology import audit
from syi_shared.methodology.degraded import degraded_index, degraded_rays
from syi_shared.methodology.engine import IndexEngine, RayBucket, RayEngine, bucket_end_of
from syi_shared.methodology.params import Methodology
from syi_shared.methodology.state import IndexState, RayState
from syi_shared.models import (
    IndexValue,
    LiquidityMetrics,
    PegMetrics,
    RayRecord,
    RestatementRequest,
    validation_reason,
)
from syi_shared.streaming.step import Closed
from syi_shared.timefmt import millis, now_text, time_text
from syi_shared.topics import (
    DAY_MS,
    EX_MKTCAP,
    METRICS_LIQUIDITY,
    METRICS_PEG,
    RAY_CALCULATED,
    SYI_CALCULATED,
    SYI_RESTATEMENTS,
    TRAD_TBILL,
)

RAY_OUTPUT_TOPICS = (METRICS_PEG, METRICS_LIQUIDITY, RAY_CALCULATED)
INDEX_TOPIC = SYI_CALCULATED
# syi-calc: ray.calculated is gated by per-symbol progress instead of the clock
INDEX_CLOCKED_TOPICS = (EX_MKTCAP, TRAD_TBILL)
# syi-calc: restatement requests, outside the clock (the step hands them to `restate`)
INDEX_REQUEST_TOPICS = (SYI_RESTATEMENTS,)
# How far back syi-calc knows the cid of each bucket it published, so it can check what a
# restatement supersedes (about 800 KB of checkpoint); an older bucket is refused, unless it
# was restated before (the revisions of restated buckets are all kept).
RESTATE_WINDOW_MS = 7 * DAY_MS
# IndexCalculator.state()'s format: 2 added `published`, `revisions` and `restate_floor_ms`.
INDEX_STATE_VERSION = 2


class RayCalculator:
    """Adapts RayEngine to the stateful step: every number comes from the engine."""

    def __init__(self, methodology: Methodology, state: dict[str, Any] | None, metrics: Any = None) -> None:
        state = state or {}
        self.engine = RayEngine(methodology, RayState.from_dict(state["engine"]) if "engine" in state else None)
        self.metrics = metrics
        last = state.get("last_good")  # carried into a bucket whose calculation fails
        self.last_good: RayBucket | None = RayBucket(
            last["bucket_end_ms"], [PegMetrics.model_validate(row) for row in last["peg"]],
            [LiquidityMetrics.model_validate(row) for row in last["liquidity"]],
            [RayRecord.model_validate(row) for row in last["rays"]],
        ) if last else None

    def bucket_end_of(self, topic: str, value: BaseModel) -> int:
        return bucket_end_of(millis(value.event_time))  # type: ignore[attr-defined]

    def event_ms(self, topic: str, value: BaseModel) -> int | None:
        return millis(value.event_time)  # type: ignore[attr-defined]

    def refusal(self, topic: str, value: BaseModel) -> str | None:
        return None  # every valid input counts

    def observe(self, topic: str, value: BaseModel, position: tuple[int, int]) -> None:
        self.engine.observe(topic, value, position)  # type: ignore[arg-type]

    def ready(self, bucket_end_ms: int) -> bool:
        return True  # only the clock gates ray-calc

    def close(self, bucket_end_ms: int) -> Closed:
        bucket = self.engine.close_bucket(bucket_end_ms)
        self.last_good = bucket
        return self._outputs(bucket)

    def close_degraded(self, bucket_end_ms: int, reason: str) -> Closed:
        return self._outputs(degraded_rays(self.engine, bucket_end_ms, reason, self.last_good))

    def _outputs(self, bucket: RayBucket) -> Closed:
        outputs: list[tuple[str, BaseModel]] = [(METRICS_PEG, row) for row in bucket.peg]
        outputs += [(METRICS_LIQUIDITY, row) for row in bucket.liquidity]
        outputs += [(RAY_CALCULATED, row) for row in bucket.rays]
        newest = [millis(row.inputs_max_event_time) for row in bucket.rays if row.inputs_max_event_time]
        if self.metrics is not None:
            self.metrics.bucket(bucket.rays)
        return Closed(outputs, max(newest) if newest else None)

    def state(self) -> dict[str, Any]:
        last = self.last_good
        return {
            "engine": self.engine.state.to_dict(),
            "last_good": {
                "bucket_end_ms": last.bucket_end_ms,
                "peg": [row.model_dump(mode="json") for row in last.peg],
                "liquidity": [row.model_dump(mode="json") for row in last.liquidity],
                "rays": [row.model_dump(mode="json") for row in last.rays],
            } if last is not None else None,
        }

    def restate(self, request: BaseModel, last_closed_ms: int | None) -> Closed | str:
        return "restatement_unsupported: ray-calc publishes no revisions"

    def continue_chain(self, last_cid: str | None) -> None:
        pass  # ray.calculated carries no chain

    def published_elsewhere(self, upto_ms: int) -> None:
        pass


class IndexCalculator:
    """Adapts IndexEngine to the stateful step: every number comes from the engine."""

    def __init__(self, methodology: Methodology, state: dict[str, Any] | None, metrics: Any = None,
                 restate_window_ms: int = RESTATE_WINDOW_MS) -> None:
        state = migrate_index_state(state or {})
        self.engine = IndexEngine(methodology, IndexState.from_dict(state["engine"]) if "engine" in state else None)
        self.symbols = methodology.symbols
        self.version = methodology.version
        # symbol -> newest ray bucket delivered (of any methodology_version: it is ray-calc's progress)
        self.progress: dict[str, int] = dict(state.get("progress", {}))
        # buckets ray-calc delivered under another methodology_version (not yet closed here), the newest
        self.foreign_buckets: set[int] = set(state.get("foreign_buckets", []))
        self.foreign_upto: int | None = state.get("foreign_upto")
        self.metrics = metrics
        last = state.get("last_good")  # carried into a bucket whose calculation fails
        self.last_good: IndexValue | None = IndexValue.model_validate(last) if last else None
        # Restatements (docs/topics.md, "Revisions"): bucket -> cid of the record published for
        # it, for the buckets of the last `restate_window_ms`; bucket -> (revision, cid) of the
        # latest revision of every restated bucket; buckets up to the floor were published by a
        # run whose state is lost (their cids are unknown here).
        self.restate_window_ms = restate_window_ms
        self.published: OrderedDict[int, str] = OrderedDict(
            (int(bucket), cid) for bucket, cid in state["published"].items())
        self.revisions: dict[int, tuple[int, str]] = {
            int(bucket): (revision, cid) for bucket, (revision, cid) in state["revisions"].items()}
        self.restate_floor_ms: int | None = state["restate_floor_ms"]

    def bucket_end_of(self, topic: str, value: BaseModel) -> int:
        if isinstance(value, RayRecord):
            return millis(value.bucket_end)  # a ray record belongs to the bucket it was computed for
        return bucket_end_of(millis(value.event_time))  # type: ignore[attr-defined]

    def event_ms(self, topic: str, value: BaseModel) -> int | None:
        return None if isinstance(value, RayRecord) else millis(value.event_time)  # type: ignore[attr-defined]

    def refusal(self, topic: str, value: BaseModel) -> str | None:
        """A ray record of another methodology_version (a ray-calc on another methodology file) is
        refused: its numbers follow other rules, and published under this version's label they
        would be a lie. It still says ray-calc is done with its bucket (see `ready`)."""
        if not isinstance(value, RayRecord) or value.methodology_version == self.version:
            return None
        bucket = self._delivered(value)
        self.foreign_buckets.add(bucket)
        self.foreign_upto = max(self.foreign_upto or bucket, bucket)
        return (f"methodology_mismatch: methodology_version {value.methodology_version!r} is not "
                f"syi-calc's {self.version!r}")

    def observe(self, topic: str, value: BaseModel, position: tuple[int, int]) -> None:
        if isinstance(value, RayRecord):
            self._delivered(value)
        self.engine.observe(topic, value, position)  # type: ignore[arg-type]

    def _delivered(self, record: RayRecord) -> int:
        bucket = millis(record.bucket_end)
        self.progress[record.symbol] = max(self.progress.get(record.symbol, bucket), bucket)
        return bucket

    def ready(self, bucket_end_ms: int) -> bool:
        """Whether ray-calc is done with the bucket for every candidate: the candidate's records
        are in up to it (one partition per symbol, in order), or ray-calc delivered the bucket
        under another methodology_version (it writes a bucket in one transaction, all of one
        version: no record of ours is coming for it), or ray-calc, on another methodology, never
        delivered the candidate at all (that file does not list it). So a ray-calc on another
        file makes the buckets close without ray records rather than wait forever; with none of
        its records seen this is exactly the per-candidate progress rule."""
        t = bucket_end_ms
        if t in self.foreign_buckets:
            return True
        foreign = self.foreign_upto is not None and self.foreign_upto >= t
        return all(
            self.progress[symbol] >= t if symbol in self.progress else foreign for symbol in self.symbols
        )

    def close(self, bucket_end_ms: int) -> Closed:
        self.foreign_buckets = {bucket for bucket in self.foreign_buckets if bucket > bucket_end_ms}
        value: IndexValue | None = self.engine.close_bucket(bucket_end_ms, now_text())
        if value is not None:
            self.last_good = value
        return self._outputs(value)

    def close_degraded(self, bucket_end_ms: int, reason: str) -> Closed:
        self.foreign_buckets = {bucket for bucket in self.foreign_buckets if bucket > bucket_end_ms}
        return self._outputs(degraded_index(self.engine, bucket_end_ms, reason, self.last_good, now_text()))

    def _outputs(self, value: IndexValue | None) -> Closed:
        if value is None:
            return Closed([], None)
        self._remember(value)
        if self.metrics is not None:
            self.metrics.published(value)
        newest = millis(value.inputs_max_event_time) if value.inputs_max_event_time else None
        return Closed([(SYI_CALCULATED, value)], newest)

    def _remember(self, value: IndexValue) -> None:
        t = millis(value.bucket_end)
        if self.restate_floor_ms is None or t > self.restate_floor_ms:
            self.published[t] = value.cid
        oldest = t - self.restate_window_ms
        while self.published and next(iter(self.published)) <= oldest:  # in close order: oldest first
            self.published.popitem(last=False)

    def restate(self, request: BaseModel, last_closed_ms: int | None) -> Closed | str:
        """A restatement request (docs/topics.md, "Revisions"): its record published as the
        bucket's next revision, chained to the tip (the revision becomes the tip), or why not.

        Only the next revision of a published bucket is taken: revision 1 superseding the cid
        published for it, or, once restated, the latest revision + 1 superseding the latest's
        cid. A request that no longer follows (run twice, or raced by another) is stale."""
        if not isinstance(request, RestatementRequest):
            return f"restatement_invalid: not a restatement request ({type(request).__name__})"
        t, bucket = millis(request.bucket_end), request.bucket_end
        asked = f"the request supersedes {request.supersedes_cid} as revision {request.revision}"
        if last_closed_ms is None or t > last_closed_ms:
            closed = time_text(last_closed_ms) if last_closed_ms is not None else "none yet"
            return f"restatement_unpublished: bucket {bucket} is not closed yet (last closed {closed})"
        if t in self.revisions:
            revision, cid = self.revisions[t]
        elif t in self.published:
            revision, cid = 0, self.published[t]
        else:
            return (f"restatement_unknown: bucket {bucket} was not published by this syi-calc within the last "
                    f"{self.restate_window_ms // DAY_MS} days, so what it supersedes cannot be checked")
        if (request.revision, request.supersedes_cid) != (revision + 1, cid):
            return f"restatement_stale: bucket {bucket} is at revision {revision} (cid {cid}); {asked}"
        try:
            corrected = IndexValue.model_validate({
                **request.record, "published_at": now_text(), "prev_cid": self.engine.state.last_cid, "cid": "",
                "input_offsets": None, "close_notes": [],  # recomputed from a tape: no locators
            })
        except ValidationError as exc:
            return f"restatement_invalid: record: {validation_reason(exc)}"
        if (corrected.index_id, corrected.bucket_end) != (request.index_id, bucket):
            return (f"restatement_invalid: the record is for {corrected.index_id} {corrected.bucket_end}, "
                    f"the request for {request.index_id} {bucket}")
        value = audit.revised(corrected, request.revision, request.supersedes_cid, request.reason)
        self.revisions[t] = (value.revision, value.cid)
        self.engine.state.last_cid = value.cid  # one chain: the next record follows the revision
        return Closed([(SYI_CALCULATED, value)], None)

    def state(self) -> dict[str, Any]:
        return {
            "version": INDEX_STATE_VERSION,
            "engine": self.engine.state.to_dict(),
            "progress": dict(self.progress),
            "foreign_buckets": sorted(self.foreign_buckets),
            "foreign_upto": self.foreign_upto,
            "last_good": self.last_good.model_dump(mode="json") if self.last_good is not None else None,
            "published": {str(bucket): cid for bucket, cid in self.published.items()},
            "revisions": {str(bucket): list(latest) for bucket, latest in sorted(self.revisions.items())},
            "restate_floor_ms": self.restate_floor_ms,
        }

    def continue_chain(self, last_cid: str | None) -> None:
        """prev_cid of the next record: the cid of the last record on the topic."""
        self.engine.state.last_cid = last_cid

    def published_elsewhere(self, upto_ms: int) -> None:
        """No checkpoint, but the topic holds buckets up to `upto_ms`: their cids are not known
        here, so no restatement of them is taken (old requests read again are refused, never
        published twice)."""
        self.restate_floor_ms = upto_ms


def migrate_index_state(state: dict[str, Any]) -> dict[str, Any]:
    """An IndexCalculator state of any version in the current format (a checkpoint written
    before restatements has no version: nothing was published or restated that it knows of)."""
    state = dict(state)
    version = state.get("version", 1)
    if version > INDEX_STATE_VERSION:
        raise ValueError(f"syi-calc state version {version} is newer than {INDEX_STATE_VERSION}: run a newer release")
    if version < 2:
        state.update(version=2, published={}, revisions={}, restate_floor_ms=None)
    return state
