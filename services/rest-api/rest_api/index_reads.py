"""Turning stored rows into the API's responses; shared by the /v1 and the prototype routes."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError

from syi_shared.timefmt import format_utc, parse_utc, utc_now

from rest_api.queries import Interval, Order, Page, Store
from rest_api.settings import Settings
from rest_api.schemas import (
    ConstituentRow,
    Constituents,
    IndexCurrent,
    Statistics,
    Summary,
)

MAX_LIMIT = 10_000
M = TypeVar("M", bound=IndexCurrent)


def _store(request: Request) -> Store:
    return request.app.state.store


def _settings(request: Request) -> Settings:
    return request.app.state.settings


StoreDep = Annotated[Store, Depends(_store)]
SettingsDep = Annotated[Settings, Depends(_settings)]


def invalid(field: str, message: str, value: Any, where: str = "query") -> RequestValidationError:
    """A 422 shaped like FastAPI's own validation errors."""
    return RequestValidationError([{"type": "value_error", "loc": (where, field), "msg": message, "input": value}])


def as_utc(moment: datetime | None) -> datetime | None:
    """Query times without an offset are taken as UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def encode_cursor(moment: datetime) -> str:
    return base64.urlsafe_b64encode(format_utc(moment).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> datetime:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return parse_utc(text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid("cursor", "not a cursor returned by this API (use next_cursor as given)", cursor) from None


def history_page(
    start: datetime | None = Query(None, description="Earliest time, inclusive (ISO-8601; no offset = UTC)"),
    end: datetime | None = Query(None, description="Latest time, exclusive (ISO-8601; no offset = UTC)"),
    interval: Interval = Query("1m", description="Average over 1m, 5m, 1h or 1d intervals"),
    limit: int = Query(500, ge=1, le=MAX_LIMIT, description="Points per page"),
    cursor: str | None = Query(None, description="`next_cursor` of the previous page"),
    offset: int = Query(0, ge=0, le=1_000_000, description="Points to skip (alternative to `cursor`)"),
    order: Order = Query("asc", description="asc: oldest first; desc: newest first"),
) -> tuple[Interval, Page]:
    start, end = as_utc(start), as_utc(end)
    if start is not None and end is not None and start >= end:
        raise invalid("end", "must be later than start", format_utc(end))
    after = decode_cursor(cursor) if cursor else None
    return interval, Page(start=start, end=end, after=after, limit=limit, offset=offset, order=order)


def page_fields(interval: str, page: Page, items: list[Any], more: bool, last: datetime | None) -> dict[str, Any]:
    return dict(
        interval=interval,
        order=page.order,
        start=format_utc(page.start) if page.start else None,
        end=format_utc(page.end) if page.end else None,
        count=len(items),
        next_cursor=encode_cursor(last) if more and last is not None else None,
        next_offset=page.offset + len(items) if more else None,
    )


def age_seconds(bucket_end: str, now: datetime | None = None) -> float:
    return round(((now or utc_now()) - parse_utc(bucket_end)).total_seconds(), 3)


def as_of_query(
    as_of: datetime | None = Query(
        None,
        description="Read what had been published at this time (ISO-8601; no offset = UTC): only records "
        "with published_at <= as_of count, each bucket in its latest revision among those. "
        "Default: the latest revision of every bucket.",
        examples=["2026-11-28T09:00:00Z"],
    ),
) -> datetime | None:
    return as_utc(as_of)


AsOfDep = Annotated[datetime | None, Depends(as_of_query)]


async def current_record(store: Store, index_id: str, as_of: datetime | None = None) -> dict[str, Any]:
    text = await store.current_index(index_id, as_of)
    if text is None:
        if as_of is not None:
            raise HTTPException(404, f"no value of index {index_id} had been published by {format_utc(as_of)}")
        raise HTTPException(404, f"no value of index {index_id} is stored yet")
    return orjson.loads(text)


async def current(
    store: Store, index_id: str, stale_after: float, model: type[M] = IndexCurrent,
    as_of: datetime | None = None, **extra: Any,
) -> M:
    """The newest record (at `as_of`: the one current then) validated into `model` (IndexCurrent
    or a subclass) in one pass; its age is measured at `as_of` when given."""
    record = await current_record(store, index_id, as_of)
    age = age_seconds(record["bucket_end"], as_of)
    fields = {**record, "age_seconds": age, "stale": age > stale_after}
    fields.update({name: fields[source] for name, source in extra.items()})
    return model.model_validate(fields)


def constituents_of(record: dict[str, Any]) -> Constituents:
    rows = [
        ConstituentRow.model_validate(
            {**c, "weight_percent": round(c["weight"] * 100, 10), "included": c.get("excluded_reason") is None}
        )
        for c in record["constituents"]
    ]
    included = sum(row.included for row in rows)
    return Constituents(
        index_id=record["index_id"],
        bucket_end=record["bucket_end"],
        syi_decimal=record["syi_decimal"],
        syi_percent=record["syi_percent"],
        status=record["status"],
        coverage=record["coverage"],
        included=included,
        excluded=len(rows) - included,
        constituents=rows,
    )


async def statistics(
    store: Store, index_id: str, days: float, start: datetime | None = None, end: datetime | None = None
) -> Statistics:
    """Summary over [start, end), or over the `days` up to and including the newest value."""
    if start is None or end is None:
        newest = await store.newest_bucket(index_id)
        if newest is None:
            raise HTTPException(404, f"no value of index {index_id} is stored yet")
        end = end or newest + timedelta(milliseconds=1)
        start = start or end - timedelta(days=days)
    if start >= end:
        raise invalid("end", "must be later than start", format_utc(end))
    row = await store.statistics(index_id, start, end)

    def summary(scale: float) -> Summary:
        def scaled(value: float | None) -> float | None:
            return None if value is None else value * scale

        return Summary(current=scaled(row["last"]), first=scaled(row["first"]), min=scaled(row["min"]),
                       max=scaled(row["max"]), mean=scaled(row["mean"]), stddev=scaled(row["stddev"]))

    change = None
    if row["first"] is not None:
        change = (row["last"] - row["first"]) * 100
    return Statistics(
        index_id=index_id,
        start=format_utc(start),
        end=format_utc(end),
        days=round((end - start).total_seconds() / 86_400, 6),
        count=row["count"],
        degraded_count=row["degraded"],
        syi_decimal=summary(1.0),
        syi_percent=summary(100.0),
        change_percent_points=change,
        mean_risk_premium_decimal=row["mean_risk_premium_decimal"],
    )


def points_last(rows: list[Any]) -> datetime | None:
    return rows[-1]["bucket"] if rows else None

