"""Helpers for the calculator tests: the services as real processes against the session's
broker, tapes played with `play_tape` between progress markers, topics read back by time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from syi_cli.tape import BadLine, play_tape, read_tape
from syi_shared.methodology.audit import LOCATOR_FIELDS
from syi_shared.kafka import read_to_end
from syi_shared.settings import ServiceSettings
from syi_shared.streaming.progress import announce_progress, bucket_end_of
from syi_shared.timefmt import millis
from tests.conftest import REPO_ROOT, free_port, load_generator

DEMO_TAPE = REPO_ROOT / "data" / "tapes" / "demo.jsonl.gz"
MINUTE = 60_000


def make_tape(path: Path, duration: str, drop: Callable[[dict[str, Any]], bool] | None = None) -> Path:
    """A short generated tape (deterministic), optionally without the lines `drop` selects."""
    generator = load_generator()
    generator.write(generator.generate(generator.parse_duration(duration), generator.DEFAULT_SEED), path)
    if drop is not None:
        lines = [line for line in path.read_bytes().splitlines() if not drop(orjson.loads(line))]
        path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@dataclass(frozen=True)
class TapeSpan:
    first_ms: int
    last_ms: int
    messages: int


def tape_span(path: Path) -> TapeSpan:
    times = [millis(item.value.event_time) for item in read_tape(path) if not isinstance(item, BadLine)]
    return TapeSpan(min(times), max(times), len(times))


def play(path: Path, settings: ServiceSettings, speed: float | None = None, window_minutes: int | None = None) -> TapeSpan:
    """Play a tape as a replay: a progress marker before (replay mode: idleness cannot close a
    bucket), `play_tape` (in windows with a marker after each, when asked), a final marker."""
    span = tape_span(path)
    announce_progress(settings, span.first_ms, run_start_ms=span.first_ms)
    if window_minutes is None:
        play_tape(path, settings, speed=speed)
    else:
        step = window_minutes * MINUTE
        start = span.first_ms // MINUTE * MINUTE
        while start <= span.last_ms:
            play_tape(path, settings, speed=speed, start_ms=start, end_ms=start + step)
            announce_progress(settings, start + step)
            start += step
    announce_progress(settings, bucket_end_of(span.last_ms), final=True)
    return span


def read_since(settings: ServiceSettings, topic: str, since_ms: int, timeout: float = 30.0) -> list[Any]:
    """Every message appended to `topic` at/after `since_ms` (Kafka time), up to its current end."""
    return read_to_end([topic], settings, timeout, since_ms=since_ms)


def values_since(settings: ServiceSettings, topic: str, since_ms: int) -> list[dict[str, Any]]:
    return [orjson.loads(message.value()) for message in read_since(settings, topic, since_ms)]


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def comparable(value: dict[str, Any] | BaseModel) -> dict[str, Any]:
    """A record minus its locator fields, the ones allowed to differ between runs (docs/topics.md)."""
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    return {k: v for k, v in data.items() if k not in LOCATOR_FIELDS}


@dataclass
class Calculator:
    """ray-calc or syi-calc as a real process (`python -m <module>`), reading from `start_at_ms`."""

    module: str
    settings: ServiceSettings
    start_at_ms: int
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    runs: int = 0
    instance: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:10]}")
    workdir: Path = REPO_ROOT  # the process's working directory (a fresh empty one: no local state to find)

    def start(self, wait: bool = True) -> Calculator:
        self.port = free_port()
        self.runs += 1
        env = {
            **os.environ,
            "SYI_KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka_config()["bootstrap.servers"],
            "SYI_START_AT_MS": str(self.start_at_ms),
            "SYI_METRICS_PORT": str(self.port),
            "SYI_INSTANCE_ID": self.instance,  # its own checkpoint and transactional id, across restarts
            "SYI_LOG_FORMAT": "json",
            "SYI_LOG_LEVEL": "INFO",
            **self.env,
        }
        log = open(self.log_dir / f"{self.module}-{self.runs}.log", "wb")  # noqa: SIM115 (closed with the process)
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module], env=env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
        )
        if wait:
            wait_for(self.healthy, 60, f"{self.module} /healthz")
        return self

    def healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.module} exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return response.read()

    def log_tail(self, lines: int = 40) -> str:
        path = self.log_dir / f"{self.module}-{self.runs}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)
