"""Client-side helpers for the gateway tests: produce values, run a gateway, read messages."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
from confluent_kafka import Producer
from websockets.asyncio.client import ClientConnection

from syi_shared.kafka import make_producer
from syi_shared.settings import ServiceSettings
from syi_shared.timefmt import format_utc
from tests.shared.examples import RAY, SYI
from ws_gateway.gateway import Gateway
from ws_gateway.settings import Settings

# every value of the session gets its own later minute, so order is visible in bucket_end
_minutes = itertools.count()
_BASE = datetime(2031, 1, 1, tzinfo=UTC)


def syi_value(tag: str, **changes: Any) -> dict[str, Any]:
    bucket_end = format_utc(_BASE + timedelta(minutes=next(_minutes)))
    return {**SYI, "bucket_end": bucket_end, "test_tag": tag, **changes}


def ray_value(symbol: str, tag: str, **changes: Any) -> dict[str, Any]:
    bucket_end = format_utc(_BASE + timedelta(minutes=next(_minutes)))
    return {**RAY, "symbol": symbol, "bucket_end": bucket_end, "test_tag": tag, **changes}


def produce(
    settings: ServiceSettings, topic: str, values: list[dict[str, Any]], key_field: str, pace: float = 0.0
) -> list[bytes]:
    """Produce each value as JSON bytes (keyed like the real producers), `pace` seconds apart;
    returns those bytes."""
    producer = make_producer(settings)
    raws = []
    for value in values:
        raw = orjson.dumps(value)
        producer.produce(topic, key=str(value[key_field]).encode(), value=raw)
        raws.append(raw)
        if pace:
            producer.poll(pace)
    assert producer.flush(15) == 0
    return raws


def produce_syi(settings: ServiceSettings, values: list[dict[str, Any]], pace: float = 0.0) -> list[bytes]:
    return produce(settings, "syi.calculated", values, "index_id", pace)


def produce_transaction(producer: Producer, topic: str, values: list[dict[str, Any]], key_field: str,
                        end: Literal["commit", "abort", "open"]) -> list[bytes]:
    """Produce `values` in one transaction of a transactional `producer` (the calculators' way),
    flushed into the log before it commits, aborts or stays open; returns their bytes."""
    producer.begin_transaction()
    raws = []
    for value in values:
        raw = orjson.dumps(value)
        producer.produce(topic, key=str(value[key_field]).encode(), value=raw)
        raws.append(raw)
    assert producer.flush(15) == 0  # an aborted record takes its offsets too
    if end == "commit":
        producer.commit_transaction(30)
    elif end == "abort":
        producer.abort_transaction(30)
    return raws


async def wait_for(condition: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running_gateway(kafka: ServiceSettings, **overrides: Any) -> AsyncIterator[Gateway]:
    """A real gateway on a free port, following the test broker; yields once it follows the topics."""
    settings = Settings(
        _env_file=None,
        kafka_bootstrap_servers=kafka.kafka_bootstrap_servers,
        **{"ws_port": 0, "ws_close_timeout_seconds": 3.0, **overrides},
    )
    async with Gateway(settings) as gateway:
        await wait_for(lambda: gateway.follower is not None and gateway.follower.following, 60, "the follower")
        yield gateway


def url(gateway: Gateway, path: str = "/stream/syi/live", scheme: str = "ws") -> str:
    return f"{scheme}://127.0.0.1:{gateway.port}{path}"


async def receive(ws: ClientConnection, timeout: float = 30.0) -> tuple[dict[str, Any], str]:
    """The next message, parsed, and its raw text."""
    text = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(text, str), "the gateway sends text frames"
    return orjson.loads(text), text


async def collect_tagged(ws: ClientConnection, tag: str, count: int, timeout: float = 30.0) -> list[tuple[dict, str]]:
    """Read until `count` update messages carrying `tag` arrived; other messages are skipped."""
    found: list[tuple[dict, str]] = []
    deadline = time.monotonic() + timeout
    while len(found) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(found)} of {count} tagged values")
        message, text = await receive(ws, left)
        data = message.get("data")
        if message["type"] in ("syi", "ray") and isinstance(data, dict) and data.get("test_tag") == tag:
            found.append((message, text))
    return found
