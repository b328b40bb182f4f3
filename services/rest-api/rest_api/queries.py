"""The SQL the API runs against the store (tables and aggregates of store-timescale).

Only names that exist in both storage modes are used: the tables, and the `*_5m/_1h/_1d`
aggregates (plain views or TimescaleDB continuous aggregates). A history point is labelled by
the start of its interval and averages the values whose bucket_end falls in
[start, start + interval); `1m` reads the stored minute values themselves.

Every revision of an index bucket is a row of its own (docs/storage.md): reads take the latest
(`NOT superseded`), or with `as_of` the latest among the rows published at or before that
time, computed from the table (the aggregates only hold the latest revisions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncio
import time

import asyncpg

Interval = Literal["1m", "5m", "1h", "1d"]
Order = Literal["asc", "desc"]

_INDEX_POINT = """index_id, bucket, syi_decimal, syi_percent, syi_decimal_min, syi_decimal_max,
    tbill_apy_decimal, risk_premium_decimal, coverage, samples, revision"""
_INDEX_MINUTE_COLUMNS = """index_id, bucket_end AS bucket, syi_decimal, syi_percent,
    syi_decimal AS syi_decimal_min, syi_decimal AS syi_decimal_max, tbill_apy_decimal,
    risk_premium_decimal, coverage, 1::bigint AS samples, revision"""
_INDEX_MINUTES = f"(SELECT {_INDEX_MINUTE_COLUMNS} FROM index_values WHERE NOT superseded) AS minutes"
# averages carry no revision: the aggregates hold the latest revisions only
_INDEX_AVERAGE = """index_id, bucket, syi_decimal, syi_percent, syi_decimal_min, syi_decimal_max,
    tbill_apy_decimal, risk_premium_decimal, coverage, samples, NULL::integer AS revision"""
# the aggregates' bucket labels (time_bucket on TimescaleDB, date_bin on plain PostgreSQL: equal)
_INTERVALS = {"5m": "5 minutes", "1h": "1 hour", "1d": "1 day"}
_ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"

_RAY_POINT = """symbol, bucket, ray_decimal, ray_decimal_min, ray_decimal_max, apy_eff_decimal,
    peg_score, liquidity_score, s_worst, price_usd, samples"""
_RAY_MINUTES = """(SELECT symbol, bucket_end AS bucket, ray_decimal, ray_decimal AS ray_decimal_min,
    ray_decimal AS ray_decimal_max, apy_eff_decimal, peg_score, liquidity_score, s_worst, price_usd,
    1::bigint AS samples FROM ray_values) AS minutes"""

_CURRENT_INDEX = """SELECT record::text AS record FROM index_values
WHERE index_id = $1 AND NOT superseded ORDER BY bucket_end DESC, revision DESC LIMIT 1"""

# what was current at $2: the newest bucket published by then, in its latest revision by then
_CURRENT_INDEX_AS_OF = """SELECT record::text AS record FROM index_values
WHERE index_id = $1 AND published_at <= $2 ORDER BY bucket_end DESC, revision DESC LIMIT 1"""

_REVISIONS = """SELECT record::text AS record, superseded FROM index_values
WHERE index_id = $1 AND bucket_end = $2 ORDER BY revision"""

_CURRENT_RAY = "SELECT record::text AS record FROM ray_values WHERE symbol = $1 ORDER BY bucket_end DESC LIMIT 1"

_LATEST_TBILL = """SELECT series, observation_date, rate_pct, basis, source, event_time FROM tbills
ORDER BY observation_date DESC, event_time DESC LIMIT 1"""

_STATISTICS = """
WITH window_rows AS (
    SELECT bucket_end, syi_decimal, syi_percent, risk_premium_decimal, status FROM index_values
    WHERE index_id = $1 AND NOT superseded AND bucket_end >= $2 AND bucket_end < $3
)
SELECT count(*) AS count, min(bucket_end) AS first_at, max(bucket_end) AS last_at,
       min(syi_decimal) AS min, max(syi_decimal) AS max, avg(syi_decimal) AS mean,
       stddev_samp(syi_decimal) AS stddev, avg(risk_premium_decimal) AS mean_risk_premium_decimal,
       count(*) FILTER (WHERE status <> 'ok') AS degraded,
       (SELECT syi_decimal FROM window_rows ORDER BY bucket_end LIMIT 1) AS first,
       (SELECT syi_decimal FROM window_rows ORDER BY bucket_end DESC LIMIT 1) AS last
FROM window_rows
"""

_NEWEST_BUCKET = "SELECT max(bucket_end) FROM index_values WHERE index_id = $1 AND NOT superseded"


@dataclass(frozen=True)
class Page:
    start: datetime | None
    end: datetime | None
    after: datetime | None  # cursor: the last timestamp of the previous page
    limit: int
    offset: int
    order: Order


def _as_of_relation(interval: Interval, since: bool) -> str:
    """The index values as published at $2 (with `since`: only the minutes at or after $3),
    one row per bucket (its latest revision by then), averaged per `interval`."""
    published = (
        "(SELECT DISTINCT ON (bucket_end) index_id, bucket_end, syi_decimal, syi_percent, tbill_apy_decimal, "
        "risk_premium_decimal, coverage, revision FROM index_values "
        f"WHERE index_id = $1 AND published_at <= $2{' AND bucket_end >= $3' if since else ''} "
        "ORDER BY bucket_end, revision DESC) AS published"
    )
    if interval == "1m":
        return f"(SELECT {_INDEX_MINUTE_COLUMNS} FROM {published}) AS minutes"
    bucket = f"date_bin(INTERVAL '{_INTERVALS[interval]}', bucket_end, {_ORIGIN})"
    return (
        f"(SELECT index_id, {bucket} AS bucket, avg(syi_decimal) AS syi_decimal, avg(syi_percent) AS syi_percent, "
        "min(syi_decimal) AS syi_decimal_min, max(syi_decimal) AS syi_decimal_max, "
        "avg(tbill_apy_decimal) AS tbill_apy_decimal, avg(risk_premium_decimal) AS risk_premium_decimal, "
        "avg(coverage) AS coverage, count(*) AS samples "
        f"FROM {published} GROUP BY index_id, bucket) AS averages"
    )


def _history_sql(
    kind: Literal["index", "ray"], interval: Interval, page: Page, as_of: datetime | None = None
) -> tuple[str, list[Any]]:
    """The query and its arguments after the key ($1)."""
    args: list[Any] = []
    if kind == "ray":
        columns, key = _RAY_POINT, "symbol"
        relation = _RAY_MINUTES if interval == "1m" else f"ray_values_{interval}"
    else:
        columns, key = (_INDEX_POINT if interval == "1m" else _INDEX_AVERAGE), "index_id"
        if as_of is None:
            relation = _INDEX_MINUTES if interval == "1m" else f"index_values_{interval}"
        else:
            # a point labelled >= start holds only minutes >= start: filter them before DISTINCT ON
            args = [as_of] if page.start is None else [as_of, page.start]
            relation = _as_of_relation(interval, since=page.start is not None)
    conditions = [f"{key} = $1"]
    # only the bounds that are given: an "x IS NULL OR" filter would defeat the indexes
    for value, test in (
        (page.start, "bucket >= "),
        (page.end, "bucket < "),
        (page.after, "bucket > " if page.order == "asc" else "bucket < "),
    ):
        if value is not None:
            args.append(value)
            conditions.append(f"{test}${len(args) + 1}")
    sql = (
        f"SELECT {columns} FROM {relation} WHERE {' AND '.join(conditions)} "
        f"ORDER BY bucket {page.order.upper()} LIMIT {page.limit + 1} OFFSET {page.offset}"
    )
    return sql, args


class Store:
    """Read-only access to the store through an asyncpg pool.

    The newest index value changes once a minute but is the most requested thing: it is kept
    for `cache_seconds` (one query per index per period however many clients ask; 0 disables).
    """

    def __init__(self, pool: asyncpg.Pool, cache_seconds: float = 0.0) -> None:
        self.pool = pool
        self.cache_seconds = cache_seconds
        self._current: dict[str, tuple[float, str | None]] = {}
        self._current_lock = asyncio.Lock()

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    async def current_index(self, index_id: str, as_of: datetime | None = None) -> str | None:
        """The newest value's record as JSON text (latest revision), or the one current at `as_of`."""
        if as_of is not None:  # a past view: not the cached newest value
            return await self.pool.fetchval(_CURRENT_INDEX_AS_OF, index_id, as_of)
        if self.cache_seconds <= 0:
            return await self.pool.fetchval(_CURRENT_INDEX, index_id)
        cached = self._current.get(index_id)
        if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        async with self._current_lock:  # concurrent misses share one query
            cached = self._current.get(index_id)
            if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
                return cached[1]
            record = await self.pool.fetchval(_CURRENT_INDEX, index_id)
            self._current[index_id] = (time.monotonic(), record)
            return record

    async def revisions(self, index_id: str, bucket_end: datetime) -> list[asyncpg.Record]:
        """Every stored revision of one bucket, oldest first: (record as JSON text, superseded)."""
        return await self.pool.fetch(_REVISIONS, index_id, bucket_end)

    async def current_ray(self, symbol: str) -> str | None:
        return await self.pool.fetchval(_CURRENT_RAY, symbol)

    async def latest_tbill(self) -> asyncpg.Record | None:
        return await self.pool.fetchrow(_LATEST_TBILL)

    async def history(
        self, kind: Literal["index", "ray"], key: str, interval: Interval, page: Page, as_of: datetime | None = None
    ) -> tuple[list[asyncpg.Record], bool]:
        """One page of points in `page.order`; the flag says whether more follow. `as_of` (index
        only): the values as published at that time."""
        sql, args = _history_sql(kind, interval, page, as_of)
        rows = await self.pool.fetch(sql, key, *args)
        return rows[: page.limit], len(rows) > page.limit

    async def newest_bucket(self, index_id: str) -> datetime | None:
        return await self.pool.fetchval(_NEWEST_BUCKET, index_id)

    async def statistics(self, index_id: str, start: datetime, end: datetime) -> asyncpg.Record:
        return await self.pool.fetchrow(_STATISTICS, index_id, start, end)
