"""Revisions in the API against the real store: the latest revision by default, `as_of` for what had
been published at a time, and a bucket's revisions in order."""

from __future__ import annotations

import pytest

from syi_shared.models import IndexValue
from tests.rest_api.conftest import api_client
from tests.store_timescale import records as r

pytestmark = pytest.mark.integration

REASON = "DAI order book delivered late"


def correction(of: IndexValue, syi_decimal: float, published_at: str, reason: str) -> IndexValue:
    made = r.index_value(of.bucket_end, syi_decimal, index_id=of.index_id, revision=of.revision + 1,
                         supersedes_cid=of.cid, published_at=published_at)
    return IndexValue.model_validate({**made.model_dump(mode="json"), "restatement_reason": reason})


@pytest.fixture(scope="module")
async def restated(writer):
    """Five minutes 10:01 … 10:05 of 0.041 … 0.045, each published 1.21 s after its end; 10:03 restated
    twice (0.053 the next day at 09:00, 0.063 the day after), 10:05 once (0.055 the next day at 12:00)."""
    index_id = r.unique_symbol("V")
    values = [r.index_value(t, round(0.040 + k / 1000, 6), index_id=index_id)
              for k, t in enumerate(r.minutes("2026-11-27T10:01:00.000Z", 5), start=1)]
    first = correction(values[2], 0.053, "2026-11-28T09:00:00.000Z", REASON)
    second = correction(first, 0.063, "2026-11-29T09:00:00.000Z", "methodology 3.0.1: wider MAD window")
    fifth = correction(values[4], 0.055, "2026-11-28T12:00:00.000Z", REASON)
    await writer.write([("syi.calculated", v) for v in values])
    await writer.write([("syi.calculated", v) for v in (first, fifth)])
    await writer.write([("syi.calculated", second)])
    return index_id, values, (first, second, fifth)


def minutes_of(page: dict) -> list[tuple[str, float, int | None]]:
    return [(p["timestamp"][11:16], round(p["syi_decimal"], 9), p["revision"]) for p in page["items"]]


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        (None, [("10:01", 0.041, 0), ("10:02", 0.042, 0), ("10:03", 0.063, 2), ("10:04", 0.044, 0),
                ("10:05", 0.055, 1)]),
        ("2026-11-28T10:00:00Z", [("10:01", 0.041, 0), ("10:02", 0.042, 0), ("10:03", 0.053, 1),
                                  ("10:04", 0.044, 0), ("10:05", 0.045, 0)]),
        ("2026-11-28T09:00:00.000Z", [("10:01", 0.041, 0), ("10:02", 0.042, 0), ("10:03", 0.053, 1),  # inclusive
                                      ("10:04", 0.044, 0), ("10:05", 0.045, 0)]),
        ("2026-11-28T08:59:59.999Z", [("10:01", 0.041, 0), ("10:02", 0.042, 0), ("10:03", 0.043, 0),
                                      ("10:04", 0.044, 0), ("10:05", 0.045, 0)]),
        ("2026-11-27T10:03:30", [("10:01", 0.041, 0), ("10:02", 0.042, 0), ("10:03", 0.043, 0)]),  # no offset: UTC
        ("2026-11-27T10:00:00Z", []),
    ],
)
async def test_minute_history_is_the_latest_revision_or_what_was_published_as_of(api_dsn, restated, as_of,
                                                                                   expected):
    index_id = restated[0]
    params = {"as_of": as_of} if as_of else {}
    async with api_client(postgres_dsn=api_dsn, index_id=index_id) as client:
        page = (await client.get("/v1/index/syi/history", params=params)).json()
    assert minutes_of(page) == expected
    assert (page["as_of"] is None) == (as_of is None)


async def test_averaged_history_as_of_averages_what_was_published_then(api_dsn, restated):
    index_id = restated[0]
    async with api_client(postgres_dsn=api_dsn, index_id=index_id) as client:
        latest = (await client.get("/v1/index/syi/history", params={"interval": "5m"})).json()
        then = (await client.get("/v1/index/syi/history",
                                 params={"interval": "5m", "as_of": "2026-11-28T10:00:00Z"})).json()
        hourly = (await client.get("/v1/index/syi/history",
                                   params={"interval": "1h", "as_of": "2026-11-28T10:00:00Z",
                                           "start": "2026-11-27T10:00:00Z"})).json()
    # [10:00, 10:05) holds 10:01 … 10:04; 10:05 starts the next point
    assert [(p["timestamp"][11:16], round(p["syi_decimal"], 9), p["samples"], p["revision"])
            for p in latest["items"]] == [("10:00", 0.0475, 4, None), ("10:05", 0.055, 1, None)]
    assert [(p["timestamp"][11:16], round(p["syi_decimal"], 9), p["samples"]) for p in then["items"]] == [
        ("10:00", 0.045, 4), ("10:05", 0.045, 1)]  # (0.041 + 0.042 + 0.053 + 0.044) / 4
    assert [(round(p["syi_decimal"], 9), p["samples"]) for p in hourly["items"]] == [(0.045, 5)]
    assert then["as_of"] == "2026-11-28T10:00:00.000Z"


async def test_as_of_pages_walk_every_minute_once(api_dsn, restated):
    index_id = restated[0]
    params = {"as_of": "2026-11-28T10:00:00Z", "limit": 2, "start": "2026-11-27T10:02:00Z"}
    seen, cursor = [], None
    async with api_client(postgres_dsn=api_dsn, index_id=index_id) as client:
        for _ in range(5):
            page = (await client.get("/v1/index/syi/history",
                                     params={**params, **({"cursor": cursor} if cursor else {})})).json()
            seen += minutes_of(page)
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert seen == [("10:02", 0.042, 0), ("10:03", 0.053, 1), ("10:04", 0.044, 0), ("10:05", 0.045, 0)]


async def test_current_is_the_latest_revision_or_the_one_current_as_of(api_dsn, restated):
    index_id, values, (first, second, fifth) = restated
    async with api_client(postgres_dsn=api_dsn, index_id=index_id) as client:
        latest = (await client.get("/v1/index/syi/current")).json()
        legacy = (await client.get("/api/index/current")).json()
        live = (await client.get("/api/index/live")).json()
        before = (await client.get("/v1/index/syi/current", params={"as_of": "2026-11-28T11:59:59Z"})).json()
        during = (await client.get("/v1/index/syi/current", params={"as_of": "2026-11-27T10:03:30Z"})).json()
        nothing = await client.get("/v1/index/syi/current", params={"as_of": "2026-11-27T10:01:00Z"})
    assert (latest["bucket_end"], latest["revision"], latest["cid"]) == (fifth.bucket_end, 1, fifth.cid)
    assert latest["supersedes_cid"] == values[4].cid and latest["restatement_reason"] == REASON
    assert legacy["cid"] == fifth.cid and live["syi_decimal"] == 0.055
    assert (before["cid"], before["revision"]) == (values[4].cid, 0)
    assert before["age_seconds"] == pytest.approx(86_400 + 6_900 - 1)  # measured at as_of: 1 d 1 h 54:59 after
    assert during["cid"] == values[2].cid and during["age_seconds"] == 30.0 and during["stale"] is False
    assert nothing.status_code == 404  # 10:01 was published at 10:01:01.21
    assert "had been published by 2026-11-27T10:01:00.000Z" in nothing.json()["detail"]


async def test_revisions_of_a_bucket_in_order_with_the_links_and_reasons(api_dsn, restated):
    index_id, values, (first, second, _) = restated
    async with api_client(postgres_dsn=api_dsn, index_id=index_id) as client:
        restated_minute = (await client.get("/v1/index/syi/2026-11-27T10:03:00Z/revisions")).json()
        plain = (await client.get("/v1/index/syi/2026-11-27T10:04:00.000Z/revisions")).json()
        offset = (await client.get("/v1/index/syi/2026-11-27T11:04:00+01:00/revisions")).json()
        unknown = await client.get("/v1/index/syi/2026-11-27T10:06:00Z/revisions")
        bad = await client.get("/v1/index/syi/yesterday/revisions")
    assert (restated_minute["bucket_end"], restated_minute["count"], restated_minute["latest_revision"]) == (
        "2026-11-27T10:03:00.000Z", 3, 2)
    items = restated_minute["items"]
    assert [(i["revision"], i["syi_decimal"], i["superseded"]) for i in items] == [
        (0, 0.043, True), (1, 0.053, True), (2, 0.063, False)]
    assert [i["cid"] for i in items] == [values[2].cid, first.cid, second.cid]
    assert [i["supersedes_cid"] for i in items] == [None, values[2].cid, first.cid]
    assert [i["restatement_reason"] for i in items] == [None, REASON, "methodology 3.0.1: wider MAD window"]
    assert [i["published_at"] for i in items] == [values[2].published_at, first.published_at, second.published_at]
    published = second.model_dump(mode="json")
    assert {k: items[2][k] for k in published} == published  # exactly as published
    (only,) = plain["items"]
    assert (plain["count"], only["superseded"], only["restatement_reason"]) == (1, False, None)
    assert offset["bucket_end"] == "2026-11-27T10:04:00.000Z"  # an offset is honoured
    assert unknown.status_code == 404 and "2026-11-27T10:06:00.000Z" in unknown.json()["detail"]
    assert bad.status_code == 422 and bad.json()["message"].startswith("path.bucket_end:")


async def test_a_bad_as_of_is_422_naming_it(api_dsn):
    async with api_client(postgres_dsn=api_dsn) as client:
        history = await client.get("/v1/index/syi/history", params={"as_of": "last tuesday"})
        current = await client.get("/v1/index/syi/current", params={"as_of": "2026-13-01T00:00:00Z"})
    for response in (history, current):
        assert response.status_code == 422 and response.json()["message"].startswith("query.as_of:"), response.text


async def test_openapi_documents_as_of_and_the_revisions_path(api_dsn):
    async with api_client(postgres_dsn=api_dsn) as client:
        spec = (await client.get("/openapi.json")).json()
    for path in ("/v1/index/syi/history", "/v1/index/syi/current"):
        (as_of,) = [p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == "as_of"]
        assert as_of["in"] == "query" and "published_at <= as_of" in as_of["description"]
    revisions = spec["paths"]["/v1/index/syi/{bucket_end}/revisions"]["get"]
    assert set(revisions["responses"]) >= {"200", "404", "422"}
    assert revisions["parameters"][0]["name"] == "bucket_end"
    item = spec["components"]["schemas"]["IndexRevision"]["properties"]
    assert {"revision", "supersedes_cid", "restatement_reason", "superseded", "published_at"} <= set(item)
