"""The index endpoints against the real store: values, hand-checked averages, pagination, errors."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from store_timescale.settings import Settings as StoreSettings
from store_timescale.worker import run as run_store
from syi_shared import serde
from syi_shared.kafka import make_producer
from syi_shared.shutdown import Shutdown
from syi_shared.timefmt import format_utc, utc_now
from tests.rest_api.conftest import api_client
from tests.store_timescale import records as r

pytestmark = pytest.mark.integration

TBILL_APY = 0.0425


async def store(writer, values) -> None:
    await writer.write([("syi.calculated", v) for v in values])


@pytest.fixture(scope="module")
async def minutes(writer):
    """Hand-checkable data: ten minute values 0.041 … 0.050, one correction, one value the next day.

    bucket_end 10:01 … 10:10 carry 0.040 + k/1000 (k = 1 … 10); 10:03 is corrected by
    revision 1 to 0.053; 2026-11-28T00:00 carries 0.060.
    """
    index_id = r.unique_symbol("H")
    values = [r.index_value(t, round(0.040 + k / 1000, 6), index_id=index_id, tbill_apy_decimal=TBILL_APY)
              for k, t in enumerate(r.minutes("2026-11-27T10:01:00.000Z", 10), start=1)]
    correction = r.index_value("2026-11-27T10:03:00.000Z", 0.053, index_id=index_id, revision=1,
                               tbill_apy_decimal=TBILL_APY, supersedes_cid=values[2].cid)
    next_day = r.index_value("2026-11-28T00:00:00.000Z", 0.060, index_id=index_id, tbill_apy_decimal=TBILL_APY)
    await store(writer, values + [next_day])
    await store(writer, [correction])
    return index_id


def decimals(page: dict) -> list[tuple[str, float, int]]:
    return [(p["timestamp"], round(p["syi_decimal"], 9), p["samples"]) for p in page["items"]]


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        ("5m", [("2026-11-27T10:00:00.000Z", 0.045, 4),  # 0.041 0.042 0.053 0.044 (10:03 corrected)
                ("2026-11-27T10:05:00.000Z", 0.047, 5),  # 0.045 … 0.049
                ("2026-11-27T10:10:00.000Z", 0.050, 1),
                ("2026-11-28T00:00:00.000Z", 0.060, 1)]),
        ("1h", [("2026-11-27T10:00:00.000Z", 0.0465, 10),  # (0.455 + 0.010) / 10
                ("2026-11-28T00:00:00.000Z", 0.060, 1)]),
        ("1d", [("2026-11-27T00:00:00.000Z", 0.0465, 10),
                ("2026-11-28T00:00:00.000Z", 0.060, 1)]),
    ],
)
async def test_history_averages_each_interval_over_the_latest_revisions(api_dsn, minutes, interval, expected):
    async with api_client(postgres_dsn=api_dsn, index_id=minutes) as client:
        page = (await client.get("/v1/index/syi/history", params={"interval": interval})).json()
        premium = (await client.get("/v1/risk-premium/history", params={"interval": interval})).json()
    assert decimals(page) == expected
    first = page["items"][0]
    assert first["syi_percent"] == pytest.approx(expected[0][1] * 100)
    assert premium["items"][0]["risk_premium_decimal"] == pytest.approx(expected[0][1] - TBILL_APY)
    if interval == "5m":
        assert (first["syi_decimal_min"], first["syi_decimal_max"]) == (0.041, 0.053)


async def test_minute_history_is_the_stored_values_between_start_inclusive_and_end_exclusive(api_dsn, minutes):
    params = {"start": "2026-11-27T10:03:00Z", "end": "2026-11-27T10:06:00Z"}
    async with api_client(postgres_dsn=api_dsn, index_id=minutes) as client:
        page = (await client.get("/v1/index/syi/history", params=params)).json()
        naive = (await client.get("/v1/index/syi/history",
                                  params={"start": "2026-11-27T10:03:00", "end": "2026-11-27T10:06:00"})).json()
        legacy = (await client.get("/api/index/history", params={"start_date": "2026-11-27T10:03:00",
                                                                 "end_date": "2026-11-27T10:06:00"})).json()
    assert decimals(page) == [("2026-11-27T10:03:00.000Z", 0.053, 1), ("2026-11-27T10:04:00.000Z", 0.044, 1),
                              ("2026-11-27T10:05:00.000Z", 0.045, 1)]
    assert naive["items"] == page["items"]  # no offset means UTC
    assert [(p["timestamp"], p["value"]) for p in legacy] == [
        (p["timestamp"], p["syi_percent"]) for p in page["items"]]


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_cursor_and_offset_pages_walk_every_point_once(api_dsn, minutes, order):
    async with api_client(postgres_dsn=api_dsn, index_id=minutes) as client:
        everything = (await client.get("/v1/index/syi/history", params={"order": order})).json()["items"]
        by_cursor, by_offset, cursor, offset = [], [], None, 0
        for _ in range(10):
            params = {"limit": 3, "order": order, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/v1/index/syi/history", params=params)).json()
            by_cursor += page["items"]
            cursor = page["next_cursor"]
            page = (await client.get("/v1/index/syi/history", params={"limit": 3, "order": order, "offset": offset})).json()
            by_offset += page["items"]
            offset = page["next_offset"]
            if cursor is None:
                assert offset is None
                break
    times = [p["timestamp"] for p in everything]
    assert len(times) == 11 and times == sorted(times, reverse=order == "desc")
    assert by_cursor == everything and by_offset == everything


async def test_statistics_summarise_the_window_ending_at_the_newest_value(api_dsn, minutes):
    async with api_client(postgres_dsn=api_dsn, index_id=minutes) as client:
        day = (await client.get("/v1/index/syi/statistics", params={"days": 1})).json()
        hours = (await client.get("/api/index/statistics", params={"days": 0.5})).json()
    # 1 day back from 2026-11-28T00:00 takes all 11 values; half a day only the newest
    assert day["count"] == 11 and hours["count"] == 1
    stats = day["syi_decimal"]
    assert stats["first"] == 0.041 and stats["current"] == 0.060
    assert (stats["min"], stats["max"]) == (0.041, 0.060)
    assert stats["mean"] == pytest.approx((0.465 + 0.060) / 11)
    assert day["syi_percent"]["mean"] == pytest.approx(stats["mean"] * 100)
    assert day["change_percent_points"] == pytest.approx(1.9)
    assert day["end"] == "2026-11-28T00:00:00.001Z"


async def test_current_value_equals_the_last_syi_calculated_message(provisioned, api_dsn, unique_group):
    """Through the whole path: Kafka → store-timescale → PostgreSQL → the API."""
    index_id = r.unique_symbol("C")
    now = utc_now().replace(second=0, microsecond=0)
    messages = [r.index_value(format_utc(now - timedelta(minutes=3 - i)), 0.044 + i / 1000, index_id=index_id)
                for i in range(3)]
    producer = make_producer(provisioned)
    for value in messages:
        producer.produce("syi.calculated", key=value.key().encode(), value=serde.dumps(value))
    assert producer.flush(30) == 0

    settings = StoreSettings(kafka_bootstrap_servers=provisioned.kafka_config()["bootstrap.servers"],
                             postgres_dsn=api_dsn, group_id=unique_group, health_port=0, batch_wait_seconds=0.2,
                             retention_enabled=False)
    shutdown = Shutdown()
    task = asyncio.create_task(run_store(settings, shutdown))
    try:
        async with api_client(postgres_dsn=api_dsn, index_id=index_id) as client:
            deadline = time.monotonic() + 60
            while True:
                response = await client.get("/v1/index/syi/current")
                if response.status_code == 200 and response.json()["bucket_end"] == messages[-1].bucket_end:
                    break
                assert time.monotonic() < deadline, f"the last message never reached the API: {response.text}"
                await asyncio.sleep(0.2)
            current = response.json()
            legacy = (await client.get("/api/index/current")).json()
    finally:
        shutdown.trigger()
        await asyncio.wait_for(task, 30)
    last = messages[-1]
    published = last.model_dump(mode="json")
    assert {k: current[k] for k in published} == published
    assert type(last).model_validate({k: current[k] for k in published}) == last
    assert current["stale"] is False and 0 <= current["age_seconds"] < 300
    assert legacy["value"] == last.syi_percent and legacy["timestamp"] == last.bucket_end
    assert {k: legacy[k] for k in published} == published


async def test_live_reports_stale_once_the_newest_value_is_older_than_300_s(api_dsn, writer):
    fresh_id, old_id = r.unique_symbol("F"), r.unique_symbol("O")
    now = utc_now()
    await store(writer, [r.index_value(format_utc(now - timedelta(seconds=30)), 0.045, index_id=fresh_id),
                         r.index_value(format_utc(now - timedelta(seconds=301)), 0.045, index_id=old_id)])
    async with api_client(postgres_dsn=api_dsn, index_id=fresh_id) as client:
        fresh = (await client.get("/api/index/live")).json()
    async with api_client(postgres_dsn=api_dsn, index_id=old_id) as client:
        old = (await client.get("/api/index/live")).json()
        current = (await client.get("/v1/index/syi/current")).json()
    assert fresh["stale"] is False and 30 <= fresh["last_update_seconds"] < 300
    assert old["stale"] is True and old["last_update_seconds"] >= 301
    assert current["stale"] is True
    assert fresh["value"] == fresh["syi_percent"] == 4.5 and fresh["constituents_count"] == 1


async def test_constituents_list_weights_scores_and_exclusion_reasons(api_dsn, writer):
    index_id = r.unique_symbol("K")
    base = r.index_value("2026-11-27T11:00:00.000Z", 0.045, index_id=index_id).constituents[0].model_dump()
    rows = [base, {**base, "symbol": "TUSD", "weight": 0.05, "weight_renormalised": 0.0, "ray_decimal": None,
                   "excluded_reason": "peg_score below 0.98"}]
    await store(writer, [r.index_value("2026-11-27T11:00:00.000Z", 0.045, index_id=index_id, constituents=rows)])
    async with api_client(postgres_dsn=api_dsn, index_id=index_id) as client:
        table = (await client.get("/v1/index/syi/constituents")).json()
        legacy = (await client.get("/api/index/constituents")).json()
    assert (table["included"], table["excluded"]) == (1, 1)
    usdt, tusd = table["constituents"]
    assert (usdt["symbol"], usdt["weight_percent"], usdt["included"], usdt["excluded_reason"]) == (
        "USDT", 45.0, True, None)
    assert (tusd["included"], tusd["excluded_reason"], tusd["weight_renormalised"]) == (
        False, "peg_score below 0.98", 0.0)
    assert legacy["total_constituents"] == 2 and legacy["index_value"] == 4.5
    assert legacy["constituents"][0]["name"] == "Tether"
    assert legacy["constituents"][0]["raw_apy"] == pytest.approx(4.2)
    assert legacy["constituents"][0]["ray"] == pytest.approx(2.55)


async def test_ray_and_risk_premium_endpoints_read_their_tables(api_dsn, writer):
    symbol = r.unique_symbol("R")
    index_id = r.unique_symbol("P")
    times = r.minutes("2026-11-27T12:01:00.000Z", 4)
    await writer.write([("ray.calculated", r.ray(symbol, t, 0.030 + i / 1000)) for i, t in enumerate(times)]
                       + [("syi.calculated", r.index_value(times[-1], 0.045, index_id=index_id)),
                          ("trad.tbill", r.tbill("DTB3", "2099-01-02", 4.3, event_time="2099-01-02T15:30:00.000Z"))])
    async with api_client(postgres_dsn=api_dsn, index_id=index_id) as client:
        ray = (await client.get(f"/v1/ray/{symbol.lower()}/current")).json()
        hourly = (await client.get(f"/v1/ray/{symbol}/history", params={"interval": "1h"})).json()
        premium = (await client.get("/v1/risk-premium/current")).json()
        unknown = await client.get("/v1/ray/NOSUCH/current")
    assert (ray["symbol"], ray["bucket_end"], ray["ray_decimal"]) == (symbol, times[-1], 0.033)
    assert ray["ray_percent"] == pytest.approx(3.3)
    assert [(p["timestamp"], p["samples"]) for p in hourly["items"]] == [("2026-11-27T12:00:00.000Z", 4)]
    assert hourly["items"][0]["ray_decimal"] == pytest.approx(0.0315)
    assert premium["risk_premium_decimal"] == pytest.approx(0.045 - 0.0425)
    assert premium["risk_premium_bps"] == pytest.approx(25.0)
    assert premium["tbill"]["observation_date"] == "2099-01-02" and premium["tbill"]["rate_pct"] == 4.3
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/v1/index/syi/history", {"interval": "2m"}, "query.interval: Input should be '1m', '5m', '1h' or '1d'"),
        ("/v1/index/syi/history", {"limit": 0}, "query.limit: Input should be greater than or equal to 1"),
        ("/v1/index/syi/history", {"start": "yesterday"}, "query.start: Input should be a valid datetime"),
        ("/v1/index/syi/history", {"start": "2026-11-27T10:00:00Z", "end": "2026-11-27T09:00:00Z"},
         "query.end: must be later than start"),
        ("/v1/index/syi/history", {"cursor": "not-a-cursor"}, "query.cursor: not a cursor returned by this API"),
        ("/api/index/history", {"days": -1}, "query.days: Input should be greater than 0"),
        ("/api/index/statistics", {"days": "invalid"}, "query.days: Input should be a valid number"),
        ("/v1/ray/U$DC/current", {}, "path.symbol: String should match pattern"),
    ],
)
async def test_invalid_parameters_answer_422_naming_the_parameter(api_dsn, path, params, message):
    async with api_client(postgres_dsn=api_dsn) as client:
        response = await client.get(path, params=params)
    body = response.json()
    assert response.status_code == 422
    assert body["error"] == "validation_error"
    assert body["message"].startswith(message)
    assert body["detail"][0]["loc"][0] in ("query", "path")


async def test_nothing_stored_is_404_and_an_unreachable_store_is_503(api_dsn, postgres_dsn):
    async with api_client(postgres_dsn=api_dsn, index_id="NOTHING") as client:
        missing = await client.get("/v1/index/syi/current")
        live = await client.get("/api/index/live")
    down = f"postgresql://syi:syi@127.0.0.1:{_closed_port()}/stableyield"
    async with api_client(postgres_dsn=down) as client:
        unavailable = await client.get("/api/index/current")
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
    assert missing.status_code == live.status_code == 404
    assert "no value of index NOTHING" in missing.json()["detail"]
    assert unavailable.status_code == 503 and "store is unavailable" in unavailable.json()["detail"]
    # alive (a restart would not bring the database back), not ready, and it says why
    assert health.status_code == 200 and ready.status_code == 503
    assert health.json() == ready.json() == {"status": "degraded", "database": "error: ConnectionRefusedError",
                                             "reasons": ["database: error: ConnectionRefusedError"]}


def _closed_port() -> int:
    from tests.conftest import free_port

    return free_port()  # nothing listens there once the probe socket is closed
