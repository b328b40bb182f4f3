"""Time layout of the stored tables: monthly partitions (plain PostgreSQL) and retention.

On plain PostgreSQL the time-series tables are range-partitioned by month. There is no
DEFAULT partition on purpose: it would block creating a month later. The writer makes sure
the months of every batch exist before writing it, and creates a few months ahead at start.
Retention is one table here for both modes: old partitions are dropped (plain) or a
TimescaleDB retention policy drops old chunks.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import asyncpg

from syi_shared.logs import get_logger

# table -> the time column it is partitioned by
PARTITIONED: dict[str, str] = {
    "index_values": "bucket_end",
    "ray_values": "bucket_end",
    "peg_metrics": "bucket_end",
    "liquidity_metrics": "bucket_end",
    "pool_yields": "event_time",
    "market_caps": "event_time",
}

# days kept in the database; None keeps everything (the published index is the audit record)
RETENTION_DAYS: dict[str, int | None] = {
    "index_values": None,
    "ray_values": 730,
    "peg_metrics": 180,
    "liquidity_metrics": 180,
    "pool_yields": 730,
    "market_caps": 730,
}


def month_start(moment: datetime | date) -> date:
    return date(moment.year, moment.month, 1)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def partition_name(table: str, month: date) -> str:
    return f"{table}_p{month:%Y%m}"


class Partitions:
    """Creates missing monthly partitions; remembers which exist so a batch costs no query."""

    def __init__(self) -> None:
        self._known: set[str] = set()
        self.log = get_logger(component="partitions")

    async def load(self, conn: asyncpg.Connection) -> None:
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = ANY($1::text[])",
            list(PARTITIONED),
        )
        self._known = {row["relname"] for row in rows}

    async def ensure(self, conn: asyncpg.Connection, table: str, months: Iterable[date]) -> list[str]:
        """Create the partitions of `months` that do not exist yet; returns the ones created."""
        created = []
        for month in sorted(set(months)):
            name = partition_name(table, month)
            if name in self._known:
                continue
            upper = next_month(month)
            try:
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} "
                    f"FOR VALUES FROM ('{month.isoformat()} 00:00:00+00') TO ('{upper.isoformat()} 00:00:00+00')"
                )
            except (asyncpg.DuplicateTableError, asyncpg.UniqueViolationError):
                pass  # another writer created it between our check and our CREATE
            else:
                created.append(name)
                self.log.info("partition_created", table=table, partition=name)
            self._known.add(name)
        return created

    async def ensure_ahead(self, conn: asyncpg.Connection, months_ahead: int, now: datetime | None = None) -> None:
        month = month_start(now or datetime.now(UTC))
        months = [month]
        for _ in range(months_ahead):
            month = next_month(month)
            months.append(month)
        for table in PARTITIONED:
            await self.ensure(conn, table, months)

    async def drop_expired(self, conn: asyncpg.Connection, now: datetime | None = None) -> list[str]:
        """Drop the partitions whose whole month is older than the table's retention."""
        now = now or datetime.now(UTC)
        await self.load(conn)
        dropped = []
        for table, days in RETENTION_DAYS.items():
            if days is None:
                continue
            cutoff = (now - timedelta(days=days)).date()
            for name in sorted(n for n in self._known if n.startswith(f"{table}_p")):
                stamp = name.rsplit("_p", 1)[1]
                month = date(int(stamp[:4]), int(stamp[4:]), 1)
                if next_month(month) <= cutoff:
                    await conn.execute(f"DROP TABLE IF EXISTS {name}")
                    self._known.discard(name)
                    dropped.append(name)
                    self.log.info("partition_dropped", table=table, partition=name, retention_days=days)
        return dropped


async def add_retention_policies(conn: asyncpg.Connection) -> None:
    """TimescaleDB: one retention policy per hypertable that has a retention."""
    for table, days in RETENTION_DAYS.items():
        if days is not None:
            await conn.execute(
                f"SELECT add_retention_policy('{table}', INTERVAL '{days} days', if_not_exists => TRUE)"
            )
