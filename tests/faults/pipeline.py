"""The calculators as real processes for the fault tests (tests/ray_calc/streams.py's
`Calculator`), with what the faults are judged by: health as an orchestrator sees it, memory
from /proc, the published records with their Kafka timestamps, and the dead letters."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from syi_shared.kafka import read_to_end
from syi_shared.settings import ServiceSettings
from syi_shared.streaming.settings import StreamSettings
from syi_shared.topics import RAW_INPUT_TOPICS
from syi_shared.timefmt import millis
from tests.ray_calc.streams import Calculator, wait_for

LATENESS_MS = round(StreamSettings.model_fields["allowed_lateness_seconds"].default * 1000)
# Every topic a calculator reads, so every place a hostile message can be put.
CALCULATOR_INPUTS = (*RAW_INPUT_TOPICS, "ray.calculated")
SKEW_MS = 5_000  # how far past the wall clock a partition's progress may run (docs/streaming.md)
RSS_LIMIT_MB = 300  # ray-calc through a feed outage: flat, far below this
FAULTS_LONG = os.environ.get("SYI_FAULTS_LONG", "") not in ("", "0")  # `make test-long`


@dataclass(frozen=True)
class Health:
    """One answer of /healthz or /readyz: the HTTP status and the JSON body."""

    http: int | None  # None: no answer at all
    body: dict[str, Any]

    @property
    def status(self) -> str | None:
        return self.body.get("status")


def probe(calculator: Calculator, path: str = "/healthz") -> Health:
    return probe_port(calculator.port, path)


def probe_port(port: int, path: str = "/healthz") -> Health:
    """Any service's health answer on its port (a 503 still carries the report)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return Health(response.status, _json(response.read()))
    except urllib.error.HTTPError as error:  # 503 and friends still carry the report
        return Health(error.code, _json(error.read()))
    except OSError:
        return Health(None, {})


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {"unparsed": body[:200].decode(errors="replace")}
    return value if isinstance(value, dict) else {"unparsed": value}


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS in /proc/<pid>/status), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class Pipeline:
    """ray-calc and syi-calc reading the live topics from `start_at_ms`, with their real
    defaults (lateness, idle timeout); `ray_env` adds settings to ray-calc's."""

    def __init__(self, settings: ServiceSettings, start_at_ms: int, log_dir: Path,
                 ray_env: dict[str, str] | None = None) -> None:
        self.ray = Calculator("ray_calc", settings, start_at_ms, log_dir, dict(ray_env or {}))
        self.syi = Calculator("syi_calc", settings, start_at_ms, log_dir)

    @property
    def calculators(self) -> tuple[Calculator, Calculator]:
        return self.ray, self.syi

    def start(self) -> Pipeline:
        for calculator in self.calculators:
            calculator.start(wait=False)  # both start up at once
        for calculator in self.calculators:
            wait_for(calculator.healthy, 90, f"{calculator.module} /healthz")
        return self

    def stop(self) -> None:
        for calculator in self.calculators:
            calculator.stop()

    def alive(self) -> dict[str, int | None]:
        """Each calculator's exit code (None while it runs)."""
        return {c.module: (c.process.poll() if c.process else -1) for c in self.calculators}

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"--- {c.module}\n{c.log_tail(lines)}" for c in self.calculators)


@dataclass(frozen=True)
class Published:
    """One output record, with the time Kafka stamped it (the producer's clock at send)."""

    topic: str
    value: dict[str, Any]
    kafka_ms: int

    @property
    def bucket_ms(self) -> int:
        return millis(self.value["bucket_end"])


def published_since(settings: ServiceSettings, topic: str, since_ms: int, timeout: float = 60.0,
                    foreign: frozenset[tuple[int, int]] = frozenset()) -> list[Published]:
    """The records on `topic` since `since_ms`, but for the `foreign` (partition, offset)s: what
    a test itself put there."""
    return [Published(topic, orjson.loads(message.value()), message.timestamp()[1])
            for message in read_to_end([topic], settings, timeout, since_ms=since_ms)
            if (message.partition(), message.offset()) not in foreign]


def dead_letters_since(settings: ServiceSettings, since_ms: int, topics: tuple[str, ...] = CALCULATOR_INPUTS,
                       ) -> list[dict[str, Any]]:
    """Every dead letter written to the DLQs of `topics` since `since_ms` (Kafka time)."""
    messages = read_to_end([f"{topic}.dlq" for topic in topics], settings, 60.0, since_ms=since_ms)
    return [orjson.loads(message.value()) for message in messages]


def early(records: list[Published]) -> list[str]:
    """Records sent before their bucket end + the allowed lateness (by the Kafka timestamp,
    and by published_at where the record has one)."""
    found = []
    for record in records:
        sent = [record.kafka_ms]
        if "published_at" in record.value:
            sent.append(millis(record.value["published_at"]))
        if min(sent) < record.bucket_ms + LATENESS_MS:
            found.append(f"{record.topic} {record.value.get('symbol', record.value.get('index_id'))} "
                         f"{record.value['bucket_end']} sent at {min(sent) - record.bucket_ms} ms after its end")
    return found
