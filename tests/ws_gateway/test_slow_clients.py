"""A client that stops reading is conflated, then closed with 4000; a fast one misses nothing."""

from __future__ import annotations

import asyncio
import socket
import uuid

import orjson
import pytest
from prometheus_client import REGISTRY
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.ws_gateway.clients import collect_tagged, produce_syi, receive, running_gateway, syi_value, url, wait_for
from ws_gateway.fanout import SLOW_CLIENT_CLOSE_CODE

pytestmark = pytest.mark.integration

VALUES = 100
PADDING = 2 * 1024  # ~3 KiB values: a stalled client's ~100 KiB of buffers fill after ~35


def drops() -> float:
    return REGISTRY.get_sample_value("syi_ws_slow_client_drops_total", {"stream": "syi"}) or 0.0


async def stalled_client(port: int):
    """A client that reads nothing: small receive buffer, one frame of client-side queue."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return await connect(f"ws://127.0.0.1:{port}/stream/syi/live", sock=sock, max_queue=1)


async def test_slow_client_dropped_while_fast_client_receives_every_value(provisioned):
    mine = uuid.uuid4().hex[:10]
    drops_before = drops()
    async with running_gateway(
        provisioned,
        ws_client_buffer_bytes=64 * 1024,
        ws_socket_send_buffer_bytes=16 * 1024,
        ws_slow_client_timeout_seconds=1.0,
        ws_close_timeout_seconds=15.0,  # time for the stalled client to read up to the close frame
    ) as gateway:
        # the fast client drains its socket whenever the loop runs (no client-side queue limit),
        # so even a burst after a stall of this loaded machine does not put it behind
        async with connect(url(gateway), max_queue=None) as fast:
            slow = await stalled_client(gateway.port)
            await wait_for(lambda: len(gateway.syi) == 2, what="both clients")
            reader = asyncio.create_task(collect_tagged(fast, mine, VALUES, timeout=90))
            values = [syi_value(mine, padding="x" * PADDING) for _ in range(VALUES)]
            # a steady 50 values/s: fast enough to bury the stalled client, slow enough for any reader
            sent = await asyncio.to_thread(produce_syi, provisioned, values, 0.02)
            received = await reader
            await wait_for(lambda: drops() > drops_before, 30, "the slow client to be dropped")
            assert len(gateway.syi) == 1, "only the fast client is still subscribed"

            # the stalled client now reads what was queued for it, then the close frame
            slow_values = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    message, _ = await receive(slow)
                    if message["type"] == "syi" and message["data"].get("test_tag") == mine:
                        slow_values.append(message["data"]["bucket_end"])

    assert [m["data"] for m, _ in received] == [orjson.loads(raw) for raw in sent], "fast client: every value, in order"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == SLOW_CLIENT_CLOSE_CODE
    assert len(slow_values) < VALUES and slow_values == sorted(slow_values)
