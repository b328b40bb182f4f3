"""What the ingestion tests share: a real replay server process, a tail of Kafka topics from
"now", an in-process ingester runner and polling waits (no sleeps-as-sync)."""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import REGISTRY

from syi_shared.settings import ServiceSettings
from tests.conftest import REPO_ROOT, free_port

FIXTURES = REPO_ROOT / "fixtures" / "replay"
MANIFEST = orjson.loads((FIXTURES / "manifest.json").read_bytes())


class ReplayServer:
    """`python -m replay_server` on a free port, driven through its /_control endpoint."""

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkstemp(prefix="replay-server-", suffix=".log")[1])
        env = {**os.environ, "SYI_REPLAY_PORT": str(self.port), "SYI_LOG_FORMAT": "json", **(extra_env or {})}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "replay_server"], env=env, stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"replay server did not start:\n{self.log()}")
            time.sleep(0.1)

    def control(self, **command: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/_control", json=command, timeout=10)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        httpx.delete(f"{self.url}/_control", timeout=10).raise_for_status()

    def requests(self, prefix: str = "") -> list[dict[str, Any]]:
        log = httpx.get(f"{self.url}/_control", timeout=10).json()["requests"]
        return [r for r in log if r["path"].startswith(prefix)]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.log_path.unlink(missing_ok=True)


class TopicTail:
    """Messages produced to `topics` after this tail was created (it starts at the high watermarks)."""

    def __init__(self, settings: ServiceSettings, topics: list[str]) -> None:
        self.consumer = Consumer({**settings.kafka_config(), "group.id": f"tail-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False})
        metadata = self.consumer.list_topics(timeout=30)
        assignment = []
        for name in topics:
            for partition in metadata.topics[name].partitions:
                assignment.append(TopicPartition(name, partition, self._high(name, partition)))
        self.consumer.assign(assignment)
        self.messages: list[dict[str, Any]] = []

    def _high(self, name: str, partition: int) -> int:
        deadline = time.monotonic() + 60
        while True:  # freshly created topics answer "not leader" until their leaders are elected
            try:
                return self.consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=10)[1]
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def drain(self) -> list[dict[str, Any]]:
        while (message := self.consumer.poll(0)) is not None:
            if message.error():
                continue
            self.messages.append({"topic": message.topic(), "key": message.key().decode(), "raw": message.value(),
                                  "value": orjson.loads(message.value())})
        return self.messages

    async def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0,
                       what: str = "messages") -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not predicate(self.drain()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; got {len(self.messages)}: "
                                     f"{[m['key'] for m in self.messages[-10:]]}")
            await asyncio.sleep(0.1)
        return self.messages

    def of(self, topic: str, **fields: Any) -> list[dict[str, Any]]:
        return [m["value"] for m in self.drain()
                if m["topic"] == topic and all(m["value"].get(k) == v for k, v in fields.items())]

    def close(self) -> None:
        self.consumer.close()


async def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return result


@asynccontextmanager
async def running(ingester: Any) -> AsyncIterator[asyncio.Task[None]]:
    """Run `ingester.run(stop)` in this loop; stop it (and let it flush) on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(ingester.run(stop))
    try:
        yield task
    finally:
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), 30)
        except TimeoutError:  # show where it hangs
            for other in asyncio.all_tasks():
                print("still running:", other.get_coro(), other.get_stack(limit=3))
            raise


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def recorded_frames(stream: str) -> list[dict[str, Any]]:
    """Every recorded frame of one stream: {"at_ms", "stream", "data"}."""
    frames = []
    with gzip.open(FIXTURES / MANIFEST["binance"]["ws_frames"], "rb") as lines:
        for line in lines:
            if stream.encode() in line[:80]:
                frame = orjson.loads(line)
                if frame["stream"] == stream:
                    frames.append(frame)
    return frames


def frame_at(stream: str, position_s: float) -> dict[str, Any]:
    """The newest recorded frame of a stream at or before a position (what the server has current)."""
    frames = [f for f in recorded_frames(stream) if f["at_ms"] <= position_s * 1000]
    return frames[-1]["data"]


def snapshot(name: str, position_s: float) -> Any:
    entries = [e for e in MANIFEST["http"][name] if e["at_s"] <= position_s]
    return orjson.loads((FIXTURES / entries[-1]["file"]).read_bytes())


@pytest.fixture(scope="session")
def replay_process() -> Iterator[ReplayServer]:
    server = ReplayServer()
    yield server
    server.stop()


@pytest.fixture
def replay(replay_process: ReplayServer) -> Iterator[ReplayServer]:
    """The shared replay server with no faults left over (speed 1; the position is each test's business)."""
    replay_process.reset()
    yield replay_process
    replay_process.reset()
