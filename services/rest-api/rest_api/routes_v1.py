"""The versioned API: /v1/index/syi/*, /v1/ray/{symbol}/*, /v1/risk-premium/*."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query

from syi_shared.timefmt import format_utc

from rest_api import index_reads
from rest_api.index_reads import AsOfDep, SettingsDep, StoreDep, history_page, page_fields
from rest_api.queries import Interval, Page
from rest_api.schemas import (
    Constituents,
    IndexCurrent,
    IndexHistory,
    IndexPoint,
    IndexRevision,
    IndexRevisions,
    RayCurrent,
    RayHistory,
    RayPoint,
    RiskPremiumCurrent,
    RiskPremiumHistory,
    RiskPremiumPoint,
    Statistics,
    TBillObservation,
)

router = APIRouter(prefix="/v1")

HistoryQuery = Annotated[tuple[Interval, Page], Depends(history_page)]
SymbolPath = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9]{2,15}$", description="Stablecoin ticker, e.g. USDC (case-insensitive)")
]



@router.get("/index/syi/current", response_model=IndexCurrent, tags=["index"],
            summary="The newest index value",
            responses={404: {"description": "Nothing stored yet (or published by `as_of`)"}})
async def index_current(db: StoreDep, config: SettingsDep, as_of: AsOfDep) -> IndexCurrent:
    """The newest published `syi.calculated` record (latest revision), every field as published,
    plus `age_seconds` and `stale`. With `as_of`: the record that was current at that time (the
    newest bucket published by then, in its latest revision by then); its age is measured at `as_of`."""
    return await index_reads.current(db, config.index_id, config.stale_after_seconds, as_of=as_of)


@router.get("/index/syi/history", response_model=IndexHistory, tags=["index"], summary="Index history")
async def index_history(db: StoreDep, config: SettingsDep, query: HistoryQuery, as_of: AsOfDep) -> IndexHistory:
    """Index values over time, averaged per interval (1m = the minute values themselves), each
    bucket in its latest revision, or with `as_of` as it had been published at that time.
    Paginate with `next_cursor` (or `offset`)."""
    interval, page = query
    rows, more = await db.history("index", config.index_id, interval, page, as_of)
    items = [IndexPoint(timestamp=format_utc(r["bucket"]), **{k: r[k] for k in _INDEX_FIELDS}) for r in rows]
    return IndexHistory(index_id=config.index_id, items=items, as_of=format_utc(as_of) if as_of else None,
                        **page_fields(interval, page, items, more, index_reads.points_last(rows)))


_INDEX_FIELDS = ("syi_decimal", "syi_percent", "syi_decimal_min", "syi_decimal_max", "tbill_apy_decimal",
                 "risk_premium_decimal", "coverage", "samples", "revision")


@router.get("/index/syi/{bucket_end}/revisions", response_model=IndexRevisions, tags=["index"],
            summary="Every published revision of one bucket",
            responses={404: {"description": "No value of the index was published for this bucket"}})
async def index_revisions(
    db: StoreDep,
    config: SettingsDep,
    bucket_end: datetime = Path(description="The bucket's end (ISO-8601; no offset = UTC), e.g. 2026-11-27T10:03:00Z",
                                examples=["2026-11-27T10:03:00Z"]),
) -> IndexRevisions:
    """The bucket's records in revision order, each exactly as published: revision 0, then every
    correction (`revision` + 1, `supersedes_cid` naming the record it replaces,
    `restatement_reason`), with `superseded` true on all but the latest (docs/methodology.md §9)."""
    moment = index_reads.as_utc(bucket_end)
    rows = await db.revisions(config.index_id, moment)
    if not rows:
        raise HTTPException(404, f"no value of index {config.index_id} was published for {format_utc(moment)}")
    items = [IndexRevision.model_validate({**orjson.loads(row["record"]), "superseded": row["superseded"]})
             for row in rows]
    return IndexRevisions(index_id=config.index_id, bucket_end=items[0].bucket_end, count=len(items),
                          latest_revision=items[-1].revision, items=items)


@router.get("/index/syi/constituents", response_model=Constituents, tags=["index"],
            summary="Constituents of the newest value", responses={404: {"description": "Nothing stored yet"}})
async def index_constituents(db: StoreDep, config: SettingsDep) -> Constituents:
    """Every constituent of the weight set with its weight, scores, RAY and exclusion reason
    (null when included)."""
    return index_reads.constituents_of(await index_reads.current_record(db, config.index_id))


@router.get("/index/syi/statistics", response_model=Statistics, tags=["index"], summary="Index statistics",
            responses={404: {"description": "Nothing stored yet"}})
async def index_statistics(
    db: StoreDep,
    config: SettingsDep,
    days: float = Query(30, gt=0, le=3650, description="Window length, ending at the newest value"),
    start: datetime | None = Query(None, description="Window start, inclusive (overrides days)"),
    end: datetime | None = Query(None, description="Window end, exclusive (default: just after the newest value)"),
) -> Statistics:
    """Count, first/current/min/max/mean/stddev (decimal and percent) and mean risk premium over a window."""
    return await index_reads.statistics(db, config.index_id, days, index_reads.as_utc(start), index_reads.as_utc(end))


@router.get("/ray/{symbol}/current", response_model=RayCurrent, tags=["ray"],
            summary="A stablecoin's newest risk-adjusted yield", responses={404: {"description": "Unknown symbol"}})
async def ray_current(symbol: SymbolPath, db: StoreDep, config: SettingsDep) -> RayCurrent:
    """The newest `ray.calculated` record of `symbol`, as published, plus `ray_percent` and its age."""
    text = await db.current_ray(symbol.upper())
    if text is None:
        raise HTTPException(404, f"no RAY of {symbol.upper()} is stored")
    record = orjson.loads(text)
    age = index_reads.age_seconds(record["bucket_end"])
    ray = record.get("ray_decimal")
    return RayCurrent.model_validate({**record, "ray_percent": None if ray is None else ray * 100,
                                      "age_seconds": age, "stale": age > config.stale_after_seconds})


@router.get("/ray/{symbol}/history", response_model=RayHistory, tags=["ray"], summary="A stablecoin's RAY history")
async def ray_history(symbol: SymbolPath, db: StoreDep, query: HistoryQuery) -> RayHistory:
    """RAY and its inputs over time, averaged per interval."""
    interval, page = query
    rows, more = await db.history("ray", symbol.upper(), interval, page)
    items = [
        RayPoint(
            timestamp=format_utc(r["bucket"]),
            ray_percent=None if r["ray_decimal"] is None else r["ray_decimal"] * 100,
            **{k: r[k] for k in _RAY_FIELDS},
        )
        for r in rows
    ]
    return RayHistory(symbol=symbol.upper(), items=items,
                      **page_fields(interval, page, items, more, index_reads.points_last(rows)))


_RAY_FIELDS = ("ray_decimal", "ray_decimal_min", "ray_decimal_max", "apy_eff_decimal", "peg_score",
               "liquidity_score", "s_worst", "price_usd", "samples")


@router.get("/risk-premium/current", response_model=RiskPremiumCurrent, tags=["risk premium"],
            summary="The newest risk premium over T-bills", responses={404: {"description": "Nothing stored yet"}})
async def risk_premium_current(db: StoreDep, config: SettingsDep) -> RiskPremiumCurrent:
    """SYI minus the 3-month T-bill APY of the newest index value, and the newest stored T-bill."""
    record = await index_reads.current_record(db, config.index_id)
    tbill = await db.latest_tbill()
    premium = record.get("risk_premium_decimal")
    return RiskPremiumCurrent(
        index_id=record["index_id"],
        bucket_end=record["bucket_end"],
        syi_decimal=record["syi_decimal"],
        syi_percent=record["syi_percent"],
        tbill_apy_decimal=record.get("tbill_apy_decimal"),
        risk_premium_decimal=premium,
        risk_premium_bps=None if premium is None else round(premium * 10_000, 6),
        tbill=None if tbill is None else TBillObservation(
            series=tbill["series"], observation_date=tbill["observation_date"].isoformat(),
            rate_pct=tbill["rate_pct"], basis=tbill["basis"], source=tbill["source"],
            event_time=format_utc(tbill["event_time"]),
        ),
    )


@router.get("/risk-premium/history", response_model=RiskPremiumHistory, tags=["risk premium"],
            summary="Risk premium history")
async def risk_premium_history(db: StoreDep, config: SettingsDep, query: HistoryQuery) -> RiskPremiumHistory:
    """The risk premium (decimal) over time, averaged per interval; null where no T-bill was fresh."""
    interval, page = query
    rows, more = await db.history("index", config.index_id, interval, page)
    items = [
        RiskPremiumPoint(timestamp=format_utc(r["bucket"]), risk_premium_decimal=r["risk_premium_decimal"],
                         syi_decimal=r["syi_decimal"], tbill_apy_decimal=r["tbill_apy_decimal"], samples=r["samples"])
        for r in rows
    ]
    return RiskPremiumHistory(index_id=config.index_id, items=items,
                              **page_fields(interval, page, items, more, index_reads.points_last(rows)))
