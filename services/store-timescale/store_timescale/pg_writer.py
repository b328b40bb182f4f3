"""Writing topic records into PostgreSQL: COPY into a staging table, then one upsert per table.

Every table has a natural key (its primary key), so writing a record twice leaves one row:
* published index values and raw observations are immutable: first write wins (DO NOTHING);
* per-minute metrics may be recomputed: the latest write wins, and only when it differs;
* a T-bill observation may be revised by FRED: the later-known value wins.
One batch is one transaction; the caller commits Kafka offsets only after it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel

from syi_shared import serde
from syi_shared.models import (
    IndexValue,
    LiquidityMetrics,
    MarketCap,
    PegMetrics,
    PoolYield,
    RayRecord,
    TBill,
)
from syi_shared.timefmt import parse_utc
from syi_shared.topics import (
    DL_APY,
    EX_MKTCAP,
    METRICS_LIQUIDITY,
    METRICS_PEG,
    RAY_CALCULATED,
    SYI_CALCULATED,
    TRAD_TBILL,
)

from store_timescale.partitions import PARTITIONED, Partitions, month_start

Conflict = Literal["nothing", "update", "update_if_newer"]


def _time(text: str | None) -> datetime | None:
    return parse_utc(text) if text is not None else None


def _json(model: BaseModel) -> str:
    # JSON as text: asyncpg's binary COPY takes jsonb as str (a custom codec breaks COPY)
    return serde.dumps(model).decode()


@dataclass(frozen=True)
class TableSpec:
    table: str
    topic: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    row: Callable[[Any], tuple[Any, ...]]
    conflict: Conflict

    def upsert_sql(self) -> str:
        cols = ", ".join(self.columns)
        insert = f"INSERT INTO {self.table} AS t ({cols}) SELECT {cols} FROM stage_{self.table}"
        target = f"ON CONFLICT ({', '.join(self.key)})"
        if self.conflict == "nothing":
            return f"{insert} {target} DO NOTHING"
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in self.columns if c not in self.key)
        condition = "t.record IS DISTINCT FROM EXCLUDED.record"
        if self.conflict == "update_if_newer":
            condition += " AND EXCLUDED.event_time >= t.event_time"
        return f"{insert} {target} DO UPDATE SET {updates}, stored_at = now() WHERE {condition}"


def _index_row(v: IndexValue) -> tuple[Any, ...]:
    return (
        v.index_id, parse_utc(v.bucket_end), v.revision, v.syi_decimal, v.syi_percent, v.status, v.coverage,
        v.hhi, v.tbill_apy_decimal, v.risk_premium_decimal, v.methodology_version, list(v.flags),
        _time(v.inputs_max_event_time), parse_utc(v.published_at), v.input_cid, v.prev_cid, v.cid,
        v.supersedes_cid, _json(v),
    )


def _ray_row(v: RayRecord) -> tuple[Any, ...]:
    return (
        v.symbol, parse_utc(v.bucket_end), v.price_usd, v.dev_bps, v.peg_score, v.sigma_peg_pct, v.depth_usd,
        v.liquidity_score, v.counterparty_score, v.apy_eff_decimal, v.s_worst, v.ray_decimal, list(v.flags),
        v.methodology_version, _json(v),
    )


def _peg_row(v: PegMetrics) -> tuple[Any, ...]:
    return (
        v.symbol, parse_utc(v.bucket_end), v.price_usd, v.dev_bps, v.peg_score, v.sigma_peg_pct, v.venues,
        list(v.flags), v.methodology_version, _json(v),
    )


def _liquidity_row(v: LiquidityMetrics) -> tuple[Any, ...]:
    return (
        v.symbol, parse_utc(v.bucket_end), v.depth_usd, v.liquidity_score, v.books, list(v.flags),
        v.methodology_version, _json(v),
    )


def _pool_row(v: PoolYield) -> tuple[Any, ...]:
    return (
        v.pool, parse_utc(v.event_time), v.project, v.chain, v.symbol, v.tvl_usd, v.apy_base_pct,
        v.apy_reward_pct, v.apy_pct, v.stablecoin, v.exposure, parse_utc(v.ingest_time), _json(v),
    )


def _mktcap_row(v: MarketCap) -> tuple[Any, ...]:
    return (
        v.symbol, parse_utc(v.event_time), v.market_cap_usd, v.price_usd, v.source, parse_utc(v.ingest_time),
        _json(v),
    )


def _tbill_row(v: TBill) -> tuple[Any, ...]:
    return (
        v.series, date.fromisoformat(v.observation_date), v.rate_pct, v.basis, v.source, parse_utc(v.event_time),
        parse_utc(v.ingest_time), _json(v),
    )


SPECS: dict[str, TableSpec] = {
    spec.topic: spec
    for spec in (
        TableSpec(
            "index_values", SYI_CALCULATED, ("index_id", "bucket_end", "revision"),
            ("index_id", "bucket_end", "revision", "syi_decimal", "syi_percent", "status", "coverage", "hhi",
             "tbill_apy_decimal", "risk_premium_decimal", "methodology_version", "flags", "inputs_max_event_time",
             "published_at", "input_cid", "prev_cid", "cid", "supersedes_cid", "record"),
            _index_row, "nothing",
        ),
        TableSpec(
            "ray_values", RAY_CALCULATED, ("symbol", "bucket_end"),
            ("symbol", "bucket_end", "price_usd", "dev_bps", "peg_score", "sigma_peg_pct", "depth_usd",
             "liquidity_score", "counterparty_score", "apy_eff_decimal", "s_worst", "ray_decimal", "flags",
             "methodology_version", "record"),
            _ray_row, "update",
        ),
        TableSpec(
            "peg_metrics", METRICS_PEG, ("symbol", "bucket_end"),
            ("symbol", "bucket_end", "price_usd", "dev_bps", "peg_score", "sigma_peg_pct", "venues", "flags",
             "methodology_version", "record"),
            _peg_row, "update",
        ),
        TableSpec(
            "liquidity_metrics", METRICS_LIQUIDITY, ("symbol", "bucket_end"),
            ("symbol", "bucket_end", "depth_usd", "liquidity_score", "books", "flags", "methodology_version",
             "record"),
            _liquidity_row, "update",
        ),
        TableSpec(
            "pool_yields", DL_APY, ("pool", "event_time"),
            ("pool", "event_time", "project", "chain", "symbol", "tvl_usd", "apy_base_pct", "apy_reward_pct",
             "apy_pct", "stablecoin", "exposure", "ingest_time", "record"),
            _pool_row, "nothing",
        ),
        TableSpec(
            "market_caps", EX_MKTCAP, ("symbol", "event_time"),
            ("symbol", "event_time", "market_cap_usd", "price_usd", "source", "ingest_time", "record"),
            _mktcap_row, "nothing",
        ),
        TableSpec(
            "tbills", TRAD_TBILL, ("series", "observation_date"),
            ("series", "observation_date", "rate_pct", "basis", "source", "event_time", "ingest_time", "record"),
            _tbill_row, "update_if_newer",
        ),
    )
}

# After new revisions land, older revisions of the same buckets stop counting in aggregates.
_MARK_SUPERSEDED = """
UPDATE index_values v SET superseded = true
FROM (SELECT index_id, bucket_end, max(revision) AS revision FROM stage_index_values GROUP BY 1, 2) s
WHERE v.index_id = s.index_id AND v.bucket_end = s.bucket_end AND NOT v.superseded
  AND v.revision < (SELECT max(w.revision) FROM index_values w
                    WHERE w.index_id = v.index_id AND w.bucket_end = v.bucket_end)
"""


def _dedupe(spec: TableSpec, rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """One row per natural key (an upsert may not touch a row twice); the table's rule picks which."""
    keep_first = spec.conflict == "nothing"
    width = len(spec.key)
    unique: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for row in rows:
        key = row[:width]
        if keep_first and key in unique:
            continue
        unique[key] = row
    return list(unique.values())


def _affected(status: str) -> int:
    # asyncpg returns the command tag, e.g. "INSERT 0 12"
    return int(status.rsplit(" ", 1)[-1])


class PgWriter:
    """Writes batches of decoded records; one transaction per batch."""

    def __init__(self, pool: asyncpg.Pool, partitioned: bool) -> None:
        self.pool = pool
        self.partitioned = partitioned  # plain mode: make sure the months exist first
        self.partitions = Partitions()

    async def start(self, months_ahead: int) -> None:
        if self.partitioned:
            async with self.pool.acquire() as conn:
                await self.partitions.load(conn)
                await self.partitions.ensure_ahead(conn, months_ahead)

    async def write(self, records: Sequence[tuple[str, BaseModel]]) -> dict[str, int]:
        """Store `(topic, record)` pairs; returns rows inserted or changed per table."""
        by_table: dict[str, tuple[TableSpec, list[tuple[Any, ...]]]] = {}
        for topic_name, record in records:
            spec = SPECS[topic_name]
            by_table.setdefault(spec.table, (spec, []))[1].append(spec.row(record))
        written: dict[str, int] = {}
        async with self.pool.acquire() as conn:
            if self.partitioned:
                for table, (spec, rows) in by_table.items():
                    if table in PARTITIONED:
                        at = spec.columns.index(PARTITIONED[table])
                        await self.partitions.ensure(conn, table, (month_start(row[at]) for row in rows))
            async with conn.transaction():
                for table, (spec, rows) in by_table.items():
                    await conn.execute(
                        f"CREATE TEMP TABLE IF NOT EXISTS stage_{table} "
                        f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                    )
                    await conn.copy_records_to_table(
                        f"stage_{table}", records=_dedupe(spec, rows), columns=list(spec.columns)
                    )
                    written[table] = _affected(await conn.execute(spec.upsert_sql()))
                    if table == "index_values":
                        await conn.execute(_MARK_SUPERSEDED)
        return written
