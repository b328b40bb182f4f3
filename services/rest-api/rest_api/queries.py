"""The SQL the API runs against the store (tables and aggregates of store-timescale).

Only names that exist in both storage modes are used: the tables, and the `*_5m/_1h/_1d`
aggregates (plain views or TimescaleDB continuous aggregates). A history point is labelled by
the start of its interval and averages the values whose bucket_end falls in
[start, start + interval); `1m` reads the stored minute values themselves.
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
    tbill_apy_decimal, risk_premium_decimal, coverage, samples"""
_INDEX_MINUTES = """(SELECT index_id, bucket_end AS bucket, syi_decimal, syi_percent,
    syi_decimal AS syi_decimal_min, syi_decimal AS syi_decimal_max, tbill_apy_decimal,
    risk_premium_decimal, coverage, 1::bigint AS samples
    FROM index_values WHERE NOT superseded) AS minutes"""

_RAY_POINT = """symbol, bucket, ray_decimal, ray_decimal_min, ray_decimal_max, apy_eff_decimal,
    peg_score, liquidity_score, s_worst, price_usd, samples"""
_RAY_MINUTES = """(SELECT symbol, bucket_end AS bucket, ray_decimal, ray_decimal AS ray_decimal_min,
    ray_decimal AS ray_decimal_max, apy_eff_decimal, peg_score, liquidity_score, s_worst, price_usd,
    1::bigint AS samples FROM ray_values) AS minutes"""

_CURRENT_INDEX = """SELECT record::text AS record FROM index_values
WHERE index_id = $1 AND NOT superseded ORDER BY bucket_end DESC, revision DESC LIMIT 1"""

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


def _source(kind: Literal["index", "ray"], interval: Interval) -> tuple[str, str, str]:
    """(columns, relation, key column) of a history query."""
    if kind == "index":
        columns, minutes, key, table = _INDEX_POINT, _INDEX_MINUTES, "index_id", "index_values"
    else:
        columns, minutes, key, table = _RAY_POINT, _RAY_MINUTES, "symbol", "ray_values"
    relation = minutes if interval == "1m" else f"{table}_{interval}"
    return columns, relation, key


def _history_sql(kind: Literal["index", "ray"], interval: Interval, page: Page) -> tuple[str, list[Any]]:
    columns, relation, key = _source(kind, interval)
    conditions, args = [f"{key} = $1"], []
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

    async def current_index(self, index_id: str) -> str | None:
        """The newest value's record as JSON text (latest revision)."""
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

    async def current_ray(self, symbol: str) -> str | None:
        return await self.pool.fetchval(_CURRENT_RAY, symbol)

    async def latest_tbill(self) -> asyncpg.Record | None:
        return await self.pool.fetchrow(_LATEST_TBILL)

    async def history(
        self, kind: Literal["index", "ray"], key: str, interval: Interval, page: Page
    ) -> tuple[list[asyncpg.Record], bool]:
        """One page of points in `page.order`; the flag says whether more follow."""
        sql, args = _history_sql(kind, interval, page)
        rows = await self.pool.fetch(sql, key, *args)
        return rows[: page.limit], len(rows) > page.limit

    async def newest_bucket(self, index_id: str) -> datetime | None:
        return await self.pool.fetchval(_NEWEST_BUCKET, index_id)

    async def statistics(self, index_id: str, start: datetime, end: datetime) -> asyncpg.Record:
        return await self.pool.fetchrow(_STATISTICS, index_id, start, end)
