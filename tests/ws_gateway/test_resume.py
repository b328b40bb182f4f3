"""Gap-free resume on the index stream: real clients, a real gateway, the real broker."""

from __future__ import annotations

import uuid

import orjson
import pytest
from websockets.asyncio.client import connect

from tests.ws_gateway.clients import collect_tagged, produce_syi, receive, running_gateway, syi_value, url, wait_for

pytestmark = pytest.mark.integration


def tag() -> str:
    return uuid.uuid4().hex[:10]


async def messages_until_quiet(ws, timeout: float = 1.5) -> list[dict]:
    found = []
    while True:
        try:
            message, _ = await receive(ws, timeout)
        except TimeoutError:
            return found
        found.append(message)


async def test_a_client_resumes_after_the_last_seq_it_saw_then_goes_on_live(provisioned):
    mine = tag()
    async with running_gateway(provisioned) as gateway:
        async with connect(url(gateway)) as ws:
            await receive(ws)  # welcome
            produce_syi(provisioned, [syi_value(mine, syi_percent=4.0 + i / 100) for i in range(2)])
            seen = await collect_tagged(ws, mine, 2)
        # disconnected: three values are published meanwhile
        missed = produce_syi(provisioned, [syi_value(mine, syi_percent=4.1 + i / 100) for i in range(3)])
        await wait_for(lambda: len([e for e in gateway.history.entries if mine.encode() in e.raw]) == 5)
        last_seq = seen[-1][0]["seq"]
        async with connect(url(gateway) + f"?since_seq={last_seq}") as ws:
            welcome, _ = await receive(ws)
            resumed = await collect_tagged(ws, mine, 3)
            [live] = produce_syi(provisioned, [syi_value(mine, syi_percent=4.5)])
            [(update, _)] = await collect_tagged(ws, mine, 1)
    assert welcome["type"] == "welcome" and welcome["data"]["resumed"] >= 3 and welcome["data"]["snapshot"] is False
    assert [m["data"] for m, _ in resumed] == [orjson.loads(raw) for raw in missed], "every missed value, in order"
    assert update["data"] == orjson.loads(live), "then live, no gap and no repeat"
    seqs = [last_seq, *(m["seq"] for m, _ in resumed), update["seq"]]
    assert seqs == sorted(set(seqs))


async def test_since_a_bucket_end_resumes_after_that_buckets_record(provisioned):
    mine = tag()
    values = [syi_value(mine) for _ in range(4)]
    sent = produce_syi(provisioned, values)
    async with running_gateway(provisioned) as gateway:
        async with connect(url(gateway) + f"?since={values[1]['bucket_end']}") as ws:
            await receive(ws)  # welcome
            resumed = await collect_tagged(ws, mine, 2)
            rest = await messages_until_quiet(ws)
    assert [m["data"] for m, _ in resumed] == [orjson.loads(raw) for raw in sent[2:]]
    assert not [m for m in rest if m.get("data", {}).get("test_tag") == mine], "nothing twice"


async def test_a_resume_too_far_back_is_refused_with_an_error_then_the_snapshot(provisioned):
    produce_syi(provisioned, [syi_value(tag())])
    async with running_gateway(provisioned) as gateway:
        async with connect(url(gateway) + "?since=2001-01-01T00:00:00.000Z") as ws:
            welcome, _ = await receive(ws)
            error, _ = await receive(ws)
            snapshot, _ = await receive(ws)
        async with connect(url(gateway) + "?since_seq=yesterday") as ws:
            await receive(ws)
            bad_seq, _ = await receive(ws)
    assert welcome["type"] == "welcome"
    assert error["type"] == "error" and "cannot resume" in error["data"]["message"]
    assert "older than the oldest record" in error["data"]["message"]
    assert snapshot["type"] == "snapshot" and isinstance(snapshot["seq"], int)
    assert bad_seq["type"] == "error" and "since_seq must be an integer" in bad_seq["data"]["message"]


async def test_a_resume_message_sends_what_came_before_the_snapshot(provisioned):
    mine = tag()
    sent = produce_syi(provisioned, [syi_value(mine) for _ in range(3)])
    async with running_gateway(provisioned) as gateway:
        async with connect(url(gateway)) as ws:
            await receive(ws)  # welcome
            snapshot, _ = await receive(ws)
            assert snapshot["data"] == orjson.loads(sent[-1])
            first = [e.seq for e in gateway.history.entries if mine.encode() in e.raw][0]
            await ws.send(orjson.dumps({"type": "resume", "since_seq": first}).decode())
            [(missed, _)] = await collect_tagged(ws, mine, 1)
            answer, _ = await receive(ws)
    assert missed["data"] == orjson.loads(sent[1]), "only the one between the position and the snapshot"
    assert answer["type"] == "resumed" and answer["data"] == {"count": 1, "until_seq": snapshot["seq"]}


async def test_a_revision_of_an_older_bucket_is_pushed_as_revision_and_keeps_the_snapshot(provisioned):
    mine = tag()
    older, newer = syi_value(mine), syi_value(mine)
    produce_syi(provisioned, [older, newer])
    async with running_gateway(provisioned) as gateway:
        async with connect(url(gateway)) as ws:
            await receive(ws)  # welcome
            await receive(ws)  # snapshot: newer
            [revised] = produce_syi(provisioned, [{**older, "revision": 1, "syi_percent": 4.2}])
            [(update, _)] = await collect_tagged_any(ws, mine)
        async with connect(url(gateway)) as ws:
            await receive(ws)
            snapshot, _ = await receive(ws)
    assert update["type"] == "revision" and update["data"] == orjson.loads(revised)
    assert snapshot["data"]["bucket_end"] == newer["bucket_end"], "the snapshot stays the newest bucket"


async def collect_tagged_any(ws, tag: str) -> list[tuple[dict, str]]:
    while True:
        message, text = await receive(ws)
        if isinstance(message.get("data"), dict) and message["data"].get("test_tag") == tag:
            return [(message, text)]
