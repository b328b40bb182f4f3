"""What is published for a bucket whose calculation failed: the bucket still closes, marked
degraded, carrying the last good values, so one bad bucket never stops the index (docs/streaming.md,
"No poison message, no crash loop").

Pure like the engines: the caller passes the engine, the bucket, the reason and the last good output.
"""

from __future__ import annotations

from syi_shared.methodology import audit
from syi_shared.methodology.engine import IndexEngine, RayBucket, RayEngine
from syi_shared.models import IndexValue, LiquidityMetrics, PegMetrics, RayRecord
from syi_shared.timefmt import time_text

FAILED_FLAG = "calculation_failed"


def failed_flag(reason: str) -> str:
    return f"{FAILED_FLAG}: {reason}"


def degraded_rays(engine: RayEngine, bucket_end_ms: int, reason: str, last: RayBucket | None) -> RayBucket:
    """One record per candidate for the bucket: the last good one re-dated (or nulls when there is
    none), flagged with the failure. The engine moves on to the next bucket."""
    m, bucket = engine.methodology, time_text(bucket_end_ms)
    flag = failed_flag(reason)
    last_rays = {row.symbol: row for row in last.rays} if last is not None else {}
    last_peg = {row.symbol: row for row in last.peg} if last is not None else {}
    last_liquidity = {row.symbol: row for row in last.liquidity} if last is not None else {}
    peg, liquidity, rays = [], [], []
    for candidate in m.constituents:
        symbol = candidate.symbol
        if symbol in last_rays:
            ray = last_rays[symbol]
            rays.append(ray.model_copy(update={"bucket_end": bucket, "flags": [*ray.flags, flag],
                                               "close_notes": [], "input_offsets": None}))
        else:
            rays.append(RayRecord(
                symbol=symbol, bucket_end=bucket, price_usd=None, dev_bps=None, peg_score=None, sigma_peg_pct=None,
                depth_usd=None, liquidity_score=None, counterparty_score=candidate.counterparty_score,
                apy_eff_decimal=None, s_worst=None, ray_decimal=None, flags=[flag], methodology_version=m.version,
                inputs_max_event_time=None,
            ))
        if symbol in last_peg:
            row = last_peg[symbol]
            peg.append(row.model_copy(update={"bucket_end": bucket, "flags": [*row.flags, flag]}))
        else:
            peg.append(PegMetrics(symbol=symbol, bucket_end=bucket, price_usd=None, dev_bps=None, peg_score=None,
                                  sigma_peg_pct=None, flags=[flag], methodology_version=m.version))
        if symbol in last_liquidity:
            row = last_liquidity[symbol]
            liquidity.append(row.model_copy(update={"bucket_end": bucket, "flags": [*row.flags, flag]}))
        else:
            liquidity.append(LiquidityMetrics(symbol=symbol, bucket_end=bucket, depth_usd=None, liquidity_score=None,
                                              flags=[flag], methodology_version=m.version))
    engine.state.last_bucket_ms = bucket_end_ms
    return RayBucket(bucket_end_ms, peg, liquidity, rays)


def degraded_index(
    engine: IndexEngine, bucket_end_ms: int, reason: str, last: IndexValue | None, published_at: str
) -> IndexValue | None:
    """The last good index value re-dated to the bucket, status degraded, the failure in `flags`,
    chained after the last published record; None when nothing good was ever published."""
    state = engine.state
    state.last_bucket_ms = bucket_end_ms
    for bucket in [bucket for bucket in state.rays if bucket <= bucket_end_ms]:
        del state.rays[bucket]
    if last is None:
        return None
    value = last.model_copy(update={
        "bucket_end": time_text(bucket_end_ms),
        "status": "degraded",
        "flags": [*last.flags, failed_flag(reason)],
        "published_at": published_at,
        "revision": 0,
        "supersedes_cid": None,
        "prev_cid": state.last_cid,
        "close_notes": [],
        "input_offsets": None,
    })
    value = IndexValue.model_validate(value.model_dump(mode="json"))
    value = value.model_copy(update={"cid": audit.record_cid_of(value)})
    state.last_cid = value.cid
    return value
