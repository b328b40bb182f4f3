"""Migrations: versioned, applied once, the same query surface in both storage modes."""

from __future__ import annotations

import re

import asyncpg
import pytest

from store_timescale.migrations import load_migrations, migrate

AGGREGATES = {f"{t}_{i}" for t in ("index_values", "ray_values") for i in ("5m", "1h", "1d")}
TABLES = {"index_values", "ray_values", "peg_metrics", "liquidity_metrics", "pool_yields", "market_caps", "tbills"}


@pytest.mark.integration
async def test_migrations_apply_once_and_a_second_run_changes_nothing(fresh_dsn):
    conn = await asyncpg.connect(fresh_dsn)
    try:
        mode, first = await migrate(conn)
        mode_again, second = await migrate(conn)
        ledger = await conn.fetch("SELECT version, mode FROM schema_migrations ORDER BY version")
        tables = {r["relname"] for r in await conn.fetch(
            "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') AND relnamespace = 'public'::regnamespace")}
        views = {r["relname"] for r in await conn.fetch(
            "SELECT relname FROM pg_class WHERE relkind IN ('v', 'm') AND relnamespace = 'public'::regnamespace")}
        partitioned = {r["relname"] for r in await conn.fetch(
            "SELECT relname FROM pg_class WHERE relkind = 'p' AND relnamespace = 'public'::regnamespace")}
        # every aggregate answers, even on an empty database
        for view in AGGREGATES:
            assert await conn.fetchval(f"SELECT count(*) FROM {view}") == 0
    finally:
        await conn.close()
    assert (mode, mode_again) == ("plain", "plain")  # no timescaledb extension on this machine
    assert first == [1, 2, 3] and second == []
    assert [(r["version"], r["mode"]) for r in ledger] == [(1, "plain"), (2, "plain"), (3, "plain")]
    assert TABLES <= tables
    assert AGGREGATES <= views
    assert partitioned == TABLES - {"tbills"}


@pytest.mark.integration
async def test_concurrent_starts_apply_each_migration_once(fresh_dsn):
    import asyncio

    conns = [await asyncpg.connect(fresh_dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        count = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        for c in conns:
            await c.close()
    assert sorted(len(applied) for _, applied in results) == [0, 0, 3]
    assert count == 3


def _aliases(sql: str) -> dict[str, list[str]]:
    """view name -> its column aliases, from a 0003 file."""
    views = {}
    for name, body in re.findall(r"VIEW (?:IF NOT EXISTS )?(\w+)\s.*?AS\s+SELECT(.*?)FROM", sql, flags=re.S):
        views[name] = [a for a in re.findall(r"AS (\w+)", body)] + re.findall(r"SELECT (\w+),", "SELECT" + body[:40])
    return views


def _code(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql).strip()


def test_timescale_mode_uses_hypertables_and_continuous_aggregates_with_the_plain_names():
    plain = {m.version: _code(m.sql) for m in load_migrations("plain")}
    timescale = {m.version: _code(m.sql) for m in load_migrations("timescale")}
    assert set(plain) == set(timescale) == {1, 2, 3}
    assert plain[1].count("PARTITION BY RANGE (bucket_end)") == 4 and "{{" not in plain[1]
    assert "PARTITION BY" not in timescale[1] and "{{" not in timescale[1]
    assert plain[2] == "" and timescale[2].count("create_hypertable(") == 6
    assert "timescaledb.continuous" in timescale[3] and "timescaledb" not in plain[3]
    plain_views, timescale_views = _aliases(plain[3]), _aliases(timescale[3])
    assert set(plain_views) == set(timescale_views) == AGGREGATES
    assert plain_views == timescale_views  # same columns in the same order: queries run on both
