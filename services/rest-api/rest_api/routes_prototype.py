"""The prototype's paths, kept because its frontend called them: /api/index/*.

Same data as /v1, in the prototype's shapes (`value` is the index in percent, history is a
bare list, `start_date`/`days` parameters).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Query

from syi_shared.timefmt import format_utc

from rest_api import index_reads
from rest_api.index_reads import MAX_LIMIT, SettingsDep, StoreDep, as_utc, invalid
from rest_api.queries import Interval, Page
from rest_api.schemas import (
    LiveValue,
    PrototypeConstituent,
    PrototypeConstituents,
    PrototypeCurrent,
    PrototypePoint,
    Statistics,
)

router = APIRouter(prefix="/api/index", tags=["prototype paths"])

NOT_FOUND = {404: {"description": "Nothing stored yet"}}

# display names the prototype's table showed; unknown tickers show the ticker
NAMES = {"USDT": "Tether", "USDC": "USD Coin", "DAI": "Dai", "TUSD": "TrueUSD", "FRAX": "Frax",
         "USDP": "Pax Dollar", "PYUSD": "PayPal USD", "FDUSD": "First Digital USD", "USDS": "Sky Dollar"}


@router.get("/current", response_model=PrototypeCurrent, summary="The newest index value", responses=NOT_FOUND)
async def current(db: StoreDep, config: SettingsDep) -> PrototypeCurrent:
    """Every field of the newest `syi.calculated` record, plus `value` (percent) and `timestamp`."""
    return await index_reads.current(db, config.index_id, config.stale_after_seconds, PrototypeCurrent,
                                     value="syi_percent", timestamp="bucket_end")


@router.get("/live", response_model=LiveValue, summary="The ticker value and its freshness", responses=NOT_FOUND)
async def live(db: StoreDep, config: SettingsDep) -> LiveValue:
    """The newest value, how old it is, and `stale: true` once it is older than 300 s."""
    record = await index_reads.current_record(db, config.index_id)
    age = index_reads.age_seconds(record["bucket_end"])
    return LiveValue(
        index_id=record["index_id"],
        value=record["syi_percent"],
        syi_decimal=record["syi_decimal"],
        syi_percent=record["syi_percent"],
        timestamp=record["bucket_end"],
        status=record["status"],
        coverage=record["coverage"],
        risk_premium_decimal=record.get("risk_premium_decimal"),
        constituents_count=sum(c.get("excluded_reason") is None for c in record["constituents"]),
        last_update_seconds=age,
        stale=age > config.stale_after_seconds,
        stale_after_seconds=config.stale_after_seconds,
    )


@router.get("/history", response_model=list[PrototypePoint], summary="Index history as a list")
async def history(
    db: StoreDep,
    config: SettingsDep,
    start_date: datetime | None = Query(None, description="Earliest time, inclusive (no offset = UTC)"),
    end_date: datetime | None = Query(None, description="Latest time, exclusive (no offset = UTC)"),
    days: float | None = Query(None, gt=0, le=3650, description="Instead of start_date: the last N days"),
    interval: Interval = Query("1m", description="Average over 1m, 5m, 1h or 1d intervals"),
    limit: int = Query(1000, ge=1, le=MAX_LIMIT),
) -> list[PrototypePoint]:
    """Oldest first. Without `start_date` or `days`, the newest `limit` points."""
    start, end = as_utc(start_date), as_utc(end_date)
    if days is not None and start is None:
        newest = end or await db.newest_bucket(config.index_id)
        start = None if newest is None else newest - timedelta(days=days)
    if start is not None and end is not None and start >= end:
        raise invalid("end_date", "must be later than start_date", format_utc(end))
    order = "asc" if start is not None else "desc"
    rows, _ = await db.history(
        "index", config.index_id, interval, Page(start=start, end=end, after=None, limit=limit, offset=0, order=order)
    )
    if order == "desc":
        rows = rows[::-1]
    return [
        PrototypePoint(timestamp=format_utc(r["bucket"]), value=r["syi_percent"], syi_decimal=r["syi_decimal"],
                       syi_percent=r["syi_percent"], risk_premium_decimal=r["risk_premium_decimal"],
                       samples=r["samples"])
        for r in rows
    ]


@router.get("/constituents", response_model=PrototypeConstituents, summary="Constituents of the newest value",
            responses=NOT_FOUND)
async def constituents(db: StoreDep, config: SettingsDep) -> PrototypeConstituents:
    """The prototype's shape (`index_value`, `total_constituents`, per row `name`, `raw_apy`, `ray` in
    percent) with every published constituent field."""
    table = index_reads.constituents_of(await index_reads.current_record(db, config.index_id))
    rows = [
        PrototypeConstituent.model_validate({
            **row.model_dump(),
            "name": NAMES.get(row.symbol, row.symbol),
            "raw_apy": None if row.apy_eff_decimal is None else row.apy_eff_decimal * 100,
            "ray": None if row.ray_decimal is None else row.ray_decimal * 100,
        })
        for row in table.constituents
    ]
    return PrototypeConstituents(index_value=table.syi_percent, timestamp=table.bucket_end, constituents=rows,
                                 total_constituents=len(rows))


@router.get("/statistics", response_model=Statistics, summary="Index statistics", responses=NOT_FOUND)
async def statistics(
    db: StoreDep,
    config: SettingsDep,
    days: float = Query(30, gt=0, le=3650, description="Window length, ending at the newest value"),
) -> Statistics:
    """The same summary as /v1/index/syi/statistics over the last `days`."""
    return await index_reads.statistics(db, config.index_id, days)
