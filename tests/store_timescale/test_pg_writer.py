"""The PostgreSQL writer against the real database: idempotent upserts, revisions, partitions."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import orjson
import pytest

from store_timescale.migrations import migrate
from store_timescale.partitions import Partitions
from store_timescale.pg_writer import SPECS, PgWriter
from syi_shared.models import IndexValue
from tests.store_timescale import records as r

pytestmark = pytest.mark.integration


@pytest.fixture
async def writer(fresh_dsn):
    conn = await asyncpg.connect(fresh_dsn)
    await migrate(conn)
    await conn.close()
    pool = await asyncpg.create_pool(fresh_dsn, min_size=1, max_size=2)
    writer = PgWriter(pool, partitioned=True)
    await writer.start(months_ahead=1)
    yield writer
    await pool.close()


def one_of_each(symbol: str) -> list[tuple[str, object]]:
    t = "2026-11-27T10:01:00.000Z"
    return [
        ("syi.calculated", r.index_value(t, 0.0447448, index_id=symbol)),
        ("ray.calculated", r.ray(symbol, t, 0.03373)),
        ("metrics.peg", r.peg(symbol, t)),
        ("metrics.liquidity", r.liquidity(symbol, t)),
        ("dl.apy", r.pool_yield(f"pool-{symbol}", "2026-11-27T10:00:00.000Z")),
        ("ex.mktcap", r.market_cap(symbol, "2026-11-27T10:00:00.000Z")),
        ("trad.tbill", r.tbill(symbol, "2026-11-25", 4.12)),
    ]


async def test_writing_the_same_records_twice_stores_each_once_as_published(writer):
    batch = one_of_each(r.unique_symbol())
    first = await writer.write(batch + batch)  # duplicates inside one batch, too
    second = await writer.write(batch)
    assert set(first.values()) == {1} and len(first) == 7
    assert set(second.values()) == {0}
    async with writer.pool.acquire() as conn:
        for topic_name, published in batch:
            rows = await conn.fetch(f"SELECT record FROM {SPECS[topic_name].table}")
            assert len(rows) == 1, topic_name
            assert type(published).model_validate(orjson.loads(rows[0]["record"])) == published
        typed = await conn.fetchrow("SELECT syi_decimal, syi_percent, status, coverage, cid FROM index_values")
    assert typed["syi_decimal"] == 0.0447448 and typed["status"] == "ok" and typed["coverage"] == 1.0
    assert typed["cid"] == batch[0][1].cid


async def test_a_higher_revision_supersedes_the_bucket_in_aggregates_but_both_are_kept(writer):
    t = "2026-11-27T10:01:00.000Z"
    original = r.index_value(t, 0.040)
    correction = r.index_value(t, 0.050, revision=1, supersedes_cid=original.cid)
    neighbour = r.index_value("2026-11-27T10:02:00.000Z", 0.060)
    await writer.write([("syi.calculated", original), ("syi.calculated", neighbour)])
    await writer.write([("syi.calculated", correction)])
    async with writer.pool.acquire() as conn:
        rows = await conn.fetch("SELECT revision, superseded FROM index_values WHERE bucket_end = $1 ORDER BY 1",
                                datetime(2026, 11, 27, 10, 1, tzinfo=UTC))
        five = await conn.fetchrow("SELECT syi_decimal, samples FROM index_values_5m WHERE index_id = 'SYI'")
    assert [(x["revision"], x["superseded"]) for x in rows] == [(0, True), (1, False)]
    assert five["samples"] == 2 and five["syi_decimal"] == pytest.approx((0.050 + 0.060) / 2)


async def test_every_revision_is_stored_as_published_whatever_order_they_arrive_in(writer):
    index_id = r.unique_symbol("R")
    t = "2026-11-27T10:01:00.000Z"
    original = r.index_value(t, 0.040, index_id=index_id)
    def revision(of: IndexValue, syi_decimal: float, reason: str) -> IndexValue:
        made = r.index_value(t, syi_decimal, index_id=index_id, revision=of.revision + 1, supersedes_cid=of.cid)
        return IndexValue.model_validate({**made.model_dump(mode="json"), "restatement_reason": reason})

    first = revision(original, 0.050, "late DAI book")
    second = revision(first, 0.055, "methodology 3.0.1")
    # revision 2 in one batch with revision 1, then revision 0 redelivered after both
    await writer.write([("syi.calculated", first), ("syi.calculated", second)])
    await writer.write([("syi.calculated", original), ("syi.calculated", first)])
    async with writer.pool.acquire() as conn:
        rows = await conn.fetch("SELECT revision, superseded, supersedes_cid, record FROM index_values "
                                "WHERE index_id = $1 ORDER BY revision", index_id)
    assert [(x["revision"], x["superseded"], x["supersedes_cid"]) for x in rows] == [
        (0, True, None), (1, True, original.cid), (2, False, first.cid)]
    stored = [IndexValue.model_validate(orjson.loads(x["record"])) for x in rows]
    assert stored == [original, first, second]
    assert orjson.loads(rows[2]["record"])["restatement_reason"] == "methodology 3.0.1"


async def test_recomputed_metrics_replace_while_observations_keep_their_first_value(writer):
    symbol = r.unique_symbol()
    t = "2026-11-27T10:01:00.000Z"
    pool = f"pool-{symbol}"
    await writer.write([
        ("ray.calculated", r.ray(symbol, t, 0.030)),
        ("dl.apy", r.pool_yield(pool, t, tvl_usd=1.0)),
        ("trad.tbill", r.tbill(symbol, "2026-11-25", 4.10, event_time="2026-11-26T15:30:00.000Z")),
    ])
    await writer.write([
        ("ray.calculated", r.ray(symbol, t, 0.031)),  # recomputed: replaces
        ("dl.apy", r.pool_yield(pool, t, tvl_usd=2.0)),  # same observation again: first one stays
        ("trad.tbill", r.tbill(symbol, "2026-11-25", 4.20, event_time="2026-11-27T15:30:00.000Z")),  # revised
    ])
    await writer.write([  # an older revision of the T-bill arriving late does not win
        ("trad.tbill", r.tbill(symbol, "2026-11-25", 4.00, event_time="2026-11-25T15:30:00.000Z")),
    ])
    async with writer.pool.acquire() as conn:
        ray_value = await conn.fetchval("SELECT ray_decimal FROM ray_values WHERE symbol = $1", symbol)
        tvl = await conn.fetchval("SELECT tvl_usd FROM pool_yields WHERE pool = $1", pool)
        rate = await conn.fetchval("SELECT rate_pct FROM tbills WHERE series = $1", symbol)
    assert (ray_value, tvl, rate) == (0.031, 1.0, 4.20)


async def test_any_month_gets_its_partition_and_expired_months_are_dropped(writer):
    symbol = r.unique_symbol()
    old = "2024-03-10T00:01:00.000Z"
    await writer.write([("ray.calculated", r.ray(symbol, old, 0.03)), ("syi.calculated", r.index_value(old, 0.04))])
    async with writer.pool.acquire() as conn:
        dropped = await writer.partitions.drop_expired(conn, now=datetime(2026, 11, 27, tzinfo=UTC))
        rays = await conn.fetchval("SELECT count(*) FROM ray_values WHERE symbol = $1", symbol)
        index = await conn.fetchval("SELECT count(*) FROM index_values WHERE bucket_end < '2025-01-01'")
        fresh = Partitions()
        await fresh.load(conn)
    assert "ray_values_p202403" in dropped  # 730 days of RAY history are kept
    assert not any(name.startswith("index_values") for name in dropped)  # the index is kept forever
    assert rays == 0 and index == 1
    assert "index_values_p202403" in fresh._known and "ray_values_p202403" not in fresh._known
