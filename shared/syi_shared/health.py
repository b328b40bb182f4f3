"""Health that tells the truth: the one report every service gives, and the watches that feed it.

A service is `ok`, `degraded` (it runs but cannot fully do its job: readiness fails, liveness
holds, so an outage does not become a restart storm) or `failed` (a restart would help), with
the reasons (docs/operations.md). Three watches any service combines:

* `broker_health`: the service's `BrokerWatch` (syi_shared.broker_watch: its clients' error
  callbacks and a metadata probe). Degraded within 15 s when no broker answers, or when a
  partition the service needs has no leader.
* `InputWatch`: each consumed topic against the cadence the topic registry declares for it.
* `Supervisor`: background tasks. An unexpected exception is logged with its traceback, counted
  in `syi_task_failures_total`, retried with jittered backoff, and the service is degraded until
  the task has made progress again.

Each takes its clock as an argument, so tests drive every rule.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE
from pydantic import BaseModel, ConfigDict, Field

from syi_shared import metric_names
from syi_shared.backoff import backoff_s
from syi_shared.broker_watch import BrokerWatch
from syi_shared.logs import get_logger
from syi_shared.metrics import counter
from syi_shared.topics import TOPICS

Status = Literal["ok", "degraded", "failed"]
_RANK: dict[str, int] = {"ok": 0, "degraded": 1, "failed": 2}

Clock = Callable[[], float]

TASK_FAILURES = counter(metric_names.TASK_FAILURES, "Unexpected exceptions in background tasks (each retried)",
                        labels=("service", "task"))


# --------------------------------------------------------------------------- the report


class HealthReport(BaseModel):
    """`status` and `reasons`, then whatever detail the service adds (mode, counts, ages...)."""

    model_config = ConfigDict(extra="allow")

    status: Status = "ok"
    reasons: list[str] = Field(default_factory=list)

    @classmethod
    def degraded(cls, *reasons: str, **detail: Any) -> HealthReport:
        return cls(status="degraded", reasons=list(reasons), **detail)

    @classmethod
    def failed(cls, *reasons: str, **detail: Any) -> HealthReport:
        return cls(status="failed", reasons=list(reasons), **detail)

    @classmethod
    def combine(cls, *parts: HealthReport, **detail: Any) -> HealthReport:
        """The worst status of the parts, all their reasons, their detail and then `detail`."""
        status = max((part.status for part in parts), key=_RANK.__getitem__, default="ok")
        reasons = list(dict.fromkeys(reason for part in parts for reason in part.reasons))
        extra: dict[str, Any] = {}
        for part in parts:
            extra.update(part.model_extra or {})
        extra.update(detail)
        return cls(status=status, reasons=reasons, **extra)

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def as_body(report: HealthReport | Mapping[str, Any]) -> dict[str, Any]:
    return report.body() if isinstance(report, HealthReport) else dict(report)


def liveness_code(status: str | None) -> int:
    """/healthz: 200 while running (ok or degraded); 503 only when a restart would help."""
    return 503 if status == "failed" else 200


def readiness_code(status: str | None) -> int:
    """/readyz: 200 only when the service can do its whole job."""
    return 200 if status == "ok" else 503


def _seconds(value: float) -> str:
    return f"{value:.0f} s"


# --------------------------------------------------------------------------- Kafka brokers


# A broker gone this long is news. Noticing takes up to ~4 s (a client's error callback at once,
# the metadata probe within two of its 2 s timeouts), so a service says degraded within 15 s.
BROKER_GRACE_S = 10.0


def broker_watch(topics: Iterable[str] = ()) -> BrokerWatch:
    """The BrokerWatch of a service that reads or writes `topics` (their partitions' leaders count)."""
    return BrokerWatch(topics, grace_s=BROKER_GRACE_S)


def broker_health(watch: BrokerWatch | None, now: float | None = None) -> HealthReport:
    """A service's BrokerWatch (syi_shared.broker_watch) as a report: degraded with its reasons
    (no broker reachable, or a needed partition without leader, for longer than its grace)."""
    if watch is None:
        return HealthReport(kafka="unknown")
    now = time.time() if now is None else now
    reasons = watch.reasons(now)
    return HealthReport(status="degraded" if reasons else "ok", reasons=reasons, kafka=watch.state(now))


# --------------------------------------------------------------------------- input staleness


class InputWatch:
    """How old each consumed input is, against the topic registry's `stale_after_s`.

    An input's age is measured from its newest message (its Kafka timestamp, else when it was
    seen), or from `started` while none has come yet: a service that just started is given one
    cadence before it calls an input stale. Topics without a declared cadence are not judged.
    """

    def __init__(self, topics: Iterable[str], clock: Clock = time.time, started: float | None = None) -> None:
        self.clock = clock
        self.limits: dict[str, float] = {}
        for name in topics:
            limit = TOPICS[name].stale_after_s if name in TOPICS else None  # dead-letter topics: no cadence
            if limit is not None:
                self.limits[name] = limit
        self.started = clock() if started is None else started
        self.newest: dict[str, float] = {}

    def seen(self, topic: str, at: float | None = None) -> None:
        now = self.clock()
        at = now if at is None else min(at, now)  # a producer clock ahead of ours is not "fresher"
        if at > self.newest.get(topic, float("-inf")):
            self.newest[topic] = at

    def saw_message(self, message: Any) -> None:
        """A consumed confluent-kafka message (errors are not input)."""
        kind, ms = message.timestamp()
        self.seen(message.topic(), ms / 1000 if kind != TIMESTAMP_NOT_AVAILABLE and ms > 0 else None)

    def ages(self, now: float | None = None) -> dict[str, float | None]:
        now = self.clock() if now is None else now
        return {name: round(now - self.newest[name], 1) if name in self.newest else None for name in self.limits}

    def check(self, now: float | None = None) -> HealthReport:
        now = self.clock() if now is None else now
        reasons = []
        for name, limit in self.limits.items():
            newest = self.newest.get(name)
            age = now - max(newest if newest is not None else float("-inf"), self.started)
            if age <= limit:
                continue
            if newest is None:
                reasons.append(f"input {name}: nothing received for {_seconds(age)} (expected at least every "
                               f"{_seconds(limit)})")
            else:
                reasons.append(f"input {name}: newest message {_seconds(now - newest)} old (expected at least "
                               f"every {_seconds(limit)})")
        return HealthReport(status="degraded" if reasons else "ok", reasons=reasons,
                            input_age_s=self.ages(now))


# --------------------------------------------------------------------------- background tasks


@dataclass
class _Task:
    failures: int = 0  # since its last progress
    total: int = 0
    last_error: str | None = None


class Supervisor:
    """Keeps a service's background tasks running, and says so while one is failing.

    Async tasks run under `await supervisor.run(name, body)`; a synchronous loop wraps each
    step in `supervisor.guard(name, step)`. A task reports progress with `progressed(name)`
    (a guarded step that returns has progressed); until then after a failure the service is
    degraded. Exceptions in `fatal` are not retried: they end the task (configuration errors).
    """

    def __init__(self, service: str, clock: Clock = time.monotonic, initial_s: float = 1.0,
                 cap_s: float = 60.0) -> None:
        self.service = service
        self.clock = clock
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.tasks: dict[str, _Task] = {}
        self._lock = threading.Lock()
        self.log = get_logger(component="supervisor")

    def failed(self, task: str, exc: BaseException) -> float:
        """Log (with the traceback) and count one failure; returns how long to wait before the retry."""
        with self._lock:
            state = self.tasks.setdefault(task, _Task())
            state.failures += 1
            state.total += 1
            state.last_error = f"{type(exc).__name__}: {exc}"
            attempt = state.failures
        delay = backoff_s(attempt - 1, self.initial_s, self.cap_s)
        TASK_FAILURES.labels(self.service, task).inc()
        self.log.error("task_failed", task=task, attempt=attempt, retry_in_s=round(delay, 3),
                       error=state.last_error, exc_info=exc)
        return delay

    def progressed(self, task: str) -> None:
        state = self.tasks.get(task)
        if state is None or state.failures == 0:
            return  # the common case: nothing to clear, no lock
        with self._lock:
            failures, state.failures = state.failures, 0
        self.log.info("task_recovered", task=task, after_failures=failures)

    def failing(self) -> dict[str, _Task]:
        with self._lock:
            return {name: state for name, state in self.tasks.items() if state.failures}

    def check(self, now: float | None = None) -> HealthReport:
        reasons = [f"task {name}: failed {state.failures}x since its last progress, retrying ({state.last_error})"
                   for name, state in sorted(self.failing().items())]
        return HealthReport(status="degraded" if reasons else "ok", reasons=reasons)

    async def run(
        self,
        task: str,
        body: Callable[[], Awaitable[None]],
        fatal: tuple[type[BaseException], ...] = (),
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        """Run `body()` until it returns; retry it after each unexpected exception."""
        while True:
            try:
                await body()
                return
            except asyncio.CancelledError:
                raise
            except fatal:
                raise
            except Exception as exc:  # noqa: BLE001 - any bug in a loop must not end it silently
                await sleep(self.failed(task, exc))

    def guard(self, task: str, step: Callable[[], Any]) -> float | None:
        """One step of a synchronous loop: None when it returned (progress), else seconds to wait."""
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - the loop goes on; the failure is logged and counted
            return self.failed(task, exc)
        self.progressed(task)
        return None
