"""Real clients over real sockets against a real gateway fed through the real Kafka broker."""

from __future__ import annotations

import os
import uuid

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from websockets.asyncio.client import connect

from syi_shared.kafka import base_config, make_producer, read_to_end
from syi_shared.timefmt import parse_utc, utc_now
from tests.ws_gateway.clients import (
    collect_tagged,
    produce,
    produce_syi,
    produce_transaction,
    ray_value,
    receive,
    running_gateway,
    syi_value,
    url,
    wait_for,
)

pytestmark = pytest.mark.integration


def tag() -> str:
    return uuid.uuid4().hex[:10]


async def test_client_gets_welcome_then_snapshot_of_latest_value(provisioned):
    mine = tag()
    [_, latest] = produce_syi(provisioned, [syi_value(mine), syi_value(mine)])
    async with running_gateway(provisioned) as gateway:
        await wait_for(lambda: gateway.syi.latest, what="the snapshot")
        async with connect(url(gateway)) as ws:
            welcome, _ = await receive(ws)
            snapshot, text = await receive(ws)
    assert welcome["type"] == "welcome"
    assert welcome["data"]["stream"] == "/stream/syi/live" and welcome["data"]["snapshot"] is True
    assert snapshot["type"] == "snapshot"
    assert snapshot["data"] == orjson.loads(latest)
    assert text.endswith(b'"data":'.decode() + latest.decode() + "}"), "data is the record exactly as published"
    assert abs((utc_now() - parse_utc(snapshot["timestamp"])).total_seconds()) < 30  # the send time


async def test_snapshot_is_the_last_committed_record_of_a_transactional_topic(provisioned):
    # the calculators' way: one transaction per bucket, so markers and aborted records sit
    # where `high - 1` would look; a transaction still open when the gateway starts
    mine = tag()
    producer = make_producer(provisioned, **{"transactional.id": f"test-ws-gateway-{mine}"})
    producer.init_transactions(30)
    produce_transaction(producer, "syi.calculated", [syi_value(mine), syi_value(mine)], "index_id", "commit")
    [last] = produce_transaction(producer, "syi.calculated", [syi_value(mine)], "index_id", "commit")
    produce_transaction(producer, "syi.calculated", [syi_value(mine) for _ in range(3)], "index_id", "abort")
    [pending] = produce_transaction(producer, "syi.calculated", [syi_value(mine)], "index_id", "open")
    async with running_gateway(provisioned) as gateway:
        await wait_for(lambda: gateway.syi.latest, what="the snapshot")
        async with connect(url(gateway)) as ws:
            welcome, _ = await receive(ws)
            snapshot, _ = await receive(ws)
            assert welcome["data"]["snapshot"] is True
            assert snapshot["type"] == "snapshot" and snapshot["data"] == orjson.loads(last)
            producer.commit_transaction(30)
            [(update, _)] = await collect_tagged(ws, mine, 1)
    assert update["type"] == "syi" and update["data"] == orjson.loads(pending), "no aborted record in between"


async def test_live_updates_arrive_in_order_exactly_as_published(provisioned):
    mine = tag()
    async with running_gateway(provisioned) as gateway, connect(url(gateway)) as ws:
        sent = produce_syi(provisioned, [syi_value(mine, syi_percent=4.0 + i / 100) for i in range(5)])
        received = await collect_tagged(ws, mine, 5)
    assert [m["type"] for m, _ in received] == ["syi"] * 5
    assert [m["data"] for m, _ in received] == [orjson.loads(raw) for raw in sent]
    assert [text for _, text in received] == [
        '{"type":"syi","timestamp":"%s","seq":%d,"data":%s}' % (m["timestamp"], m["seq"], raw.decode())
        for (m, _), raw in zip(received, sent, strict=True)
    ]
    seqs = [m["seq"] for m, _ in received]
    assert seqs == sorted(set(seqs)), "seq (the topic position) only increases"


async def test_ping_gets_pong_and_malformed_messages_get_errors_on_the_same_socket(provisioned):
    async with running_gateway(provisioned) as gateway, connect(url(gateway)) as ws:
        async def answer(frame: str | bytes) -> dict:
            await ws.send(frame)
            while True:  # skip the welcome, a snapshot or a live value
                message, _ = await receive(ws)
                if message["type"] in ("pong", "error"):
                    return message

        assert (await answer('{"type":"ping"}'))["type"] == "pong"
        assert (await answer('{"type":"ping","data":{"n":7}}'))["data"] == {"n": 7}
        for bad in ("not json", "[1, 2]", '{"type": 5}', '{"type":"subscribe"}', b"\x00\x01"):
            reply = await answer(bad)
            assert reply["type"] == "error" and reply["data"]["message"], bad
        assert (await answer('{"type":"ping"}'))["type"] == "pong", "the socket survived every bad message"


@pytest.mark.skipif(
    bool(os.environ.get("SYI_TEST_KAFKA")), reason="empties syi.calculated: only on the test's own broker"
)
async def test_gateway_started_before_any_value_waits_then_delivers(provisioned):
    # no value exists: drop what earlier tests left in syi.calculated (this session's own broker)
    admin = AdminClient(base_config(provisioned))
    probe = Consumer({**base_config(provisioned), "group.id": "ws-gateway-test-probe"})
    _, high = probe.get_watermark_offsets(TopicPartition("syi.calculated", 0), timeout=10)
    probe.close()
    for future in admin.delete_records([TopicPartition("syi.calculated", 0, high)]).values():
        future.result()

    mine = tag()
    async with running_gateway(provisioned) as gateway, connect(url(gateway)) as early:
        welcome, _ = await receive(early)
        assert welcome["type"] == "welcome" and welcome["data"]["snapshot"] is False
        [raw] = produce_syi(provisioned, [syi_value(mine)])
        first, _ = await receive(early)
        assert first["type"] == "syi" and first["data"] == orjson.loads(raw)
        async with connect(url(gateway)) as late:
            await receive(late)
            snapshot, _ = await receive(late)
        assert snapshot["type"] == "snapshot" and snapshot["data"] == orjson.loads(raw)


async def test_two_gateways_side_by_side_both_deliver_and_join_no_consumer_group(provisioned):
    mine = tag()
    async with running_gateway(provisioned) as one, running_gateway(provisioned) as two:
        async with connect(url(one)) as ws_one, connect(url(two)) as ws_two:
            sent = produce_syi(provisioned, [syi_value(mine) for _ in range(3)])
            got_one = await collect_tagged(ws_one, mine, 3)
            got_two = await collect_tagged(ws_two, mine, 3)
        groups = AdminClient(base_config(provisioned)).list_consumer_groups().result(timeout=15)
    expected = [orjson.loads(raw) for raw in sent]
    assert [m["data"] for m, _ in got_one] == expected
    assert [m["data"] for m, _ in got_two] == expected
    # assign-only consumers: nothing the pipeline's groups or lag alerts could notice
    assert not [g.group_id for g in groups.valid if g.group_id.startswith("ws-gateway")]


async def test_invalid_value_goes_to_dlq_and_the_stream_continues(provisioned):
    mine = tag()
    async with running_gateway(provisioned) as gateway, connect(url(gateway)) as ws:
        bad = orjson.dumps({**syi_value(mine), "syi_percent": "high"})
        produce(provisioned, "syi.calculated", [orjson.loads(bad)], "index_id")
        [good] = produce_syi(provisioned, [syi_value(mine)])
        [(message, _)] = await collect_tagged(ws, mine, 1)
        assert message["data"] == orjson.loads(good), "the invalid value was not delivered"
        assert gateway.follower is not None and gateway.follower.following
    letters = [orjson.loads(m.value()) for m in read_to_end(["syi.calculated.dlq"], provisioned)]
    ours = [letter for letter in letters if mine in letter["raw_value"]]
    assert ours and ours[-1]["service"] == "ws-gateway" and ours[-1]["error"].startswith("syi_percent")


async def test_constituents_stream_snapshots_newest_record_per_symbol_then_updates(provisioned):
    mine = tag()
    first, second = f"T{mine[:6].upper()}A", f"T{mine[:6].upper()}B"
    produce(provisioned, "ray.calculated", [ray_value(first, mine, ray_decimal=0.01)], "symbol")
    produce(provisioned, "ray.calculated", [ray_value(first, mine, ray_decimal=0.02)], "symbol")
    produce(provisioned, "ray.calculated", [ray_value(second, mine, ray_decimal=0.03)], "symbol")
    async with running_gateway(provisioned) as gateway:
        await wait_for(lambda: {first, second} <= set(gateway.constituents.latest), what="the constituents")
        async with connect(url(gateway, "/stream/constituents")) as ws:
            welcome, _ = await receive(ws)
            snapshot, _ = await receive(ws)
            [update] = produce(provisioned, "ray.calculated", [ray_value(second, mine, ray_decimal=0.04)], "symbol")
            [(message, _)] = await collect_tagged(ws, mine, 1)
    assert welcome["data"]["stream"] == "/stream/constituents"
    assert snapshot["type"] == "snapshot" and isinstance(snapshot["data"], list)
    newest = {record["symbol"]: record["ray_decimal"] for record in snapshot["data"]}
    assert newest[first] == 0.02 and newest[second] == 0.03
    assert [record["symbol"] for record in snapshot["data"]] == sorted(newest), "one record per symbol, by symbol"
    assert message["type"] == "ray" and message["data"] == orjson.loads(update)
