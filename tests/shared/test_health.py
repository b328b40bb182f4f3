"""syi_shared.health: the report's rules, the broker watch as a report, InputWatch and the task
Supervisor, driven by an injected clock (broker outages against a real broker: the service tests)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE, KafkaError
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from syi_shared.broker_watch import BrokerWatch
from syi_shared.health import (
    HealthReport,
    InputWatch,
    Supervisor,
    broker_health,
    broker_watch,
    liveness_code,
    readiness_code,
)
from syi_shared.topics import TOPICS


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- the report


def test_combine_takes_the_worst_status_every_reason_once_and_the_detail():
    report = HealthReport.combine(HealthReport(mode="stream"), HealthReport.degraded("a", "b"),
                                  HealthReport.degraded("b"), consumed=3)
    assert report.body() == {"status": "degraded", "reasons": ["a", "b"], "mode": "stream", "consumed": 3}
    assert HealthReport.combine(HealthReport.degraded("x"), HealthReport.failed("y")).status == "failed"
    assert HealthReport.combine().body() == {"status": "ok", "reasons": []}


@pytest.mark.parametrize(("status", "live", "ready"), [("ok", 200, 200), ("degraded", 200, 503),
                                                       ("failed", 503, 503), (None, 200, 503)])
def test_liveness_fails_only_when_a_restart_would_help_and_readiness_wants_ok(status, live, ready):
    assert (liveness_code(status), readiness_code(status)) == (live, ready)


# --------------------------------------------------------------------------- the broker


def test_broker_health_reports_the_watch_reasons_after_its_grace_and_its_state():
    watch = BrokerWatch(["cc.prices"], grace_s=15.0)
    watch.probed({("cc.prices", 0): 1}, now=100.0)
    assert broker_health(watch, now=100.0).body() == {"status": "ok", "reasons": [], "kafka": "reachable"}
    watch.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"), now=101.0)
    assert broker_health(watch, now=115.0).status == "ok"  # a short outage is not news
    report = broker_health(watch, now=116.0)
    assert (report.status, report.model_extra["kafka"]) == ("degraded", "down")
    assert report.reasons[0].startswith("kafka: no broker reachable for 15 s")
    watch.probed({("cc.prices", 0): 1}, now=117.0)
    assert broker_health(watch, now=117.0).status == "ok"
    assert broker_health(None).body() == {"status": "ok", "reasons": [], "kafka": "unknown"}


def test_services_watch_with_a_grace_that_says_degraded_within_15_s():
    watch = broker_watch(["syi.calculated"])
    assert watch.topics == ("syi.calculated",)
    watch.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"), now=100.0)
    assert broker_health(watch, now=109.0).status == "ok"
    assert broker_health(watch, now=110.0).status == "degraded"  # + up to ~4 s to notice: within 15 s


# --------------------------------------------------------------------------- InputWatch


def test_cadences_come_from_the_topic_registry():
    assert {name: t.stale_after_s for name, t in TOPICS.items()} == {
        "cc.prices": 60, "cc.orderbook": 60, "dl.apy": 7200, "ex.mktcap": 7200, "trad.tbill": 4 * 86400,
        "metrics.peg": 180, "metrics.liquidity": 180, "ray.calculated": 180, "syi.calculated": 180,
        "syi.restatements": None}  # requests come when someone restates: no cadence to miss


def test_an_input_is_stale_after_its_cadence_counted_from_start_until_the_first_message():
    clock = Clock(1_700_000_000.0)
    inputs = InputWatch(["syi.calculated", "trad.tbill"], clock=clock)
    clock.now += 180
    assert inputs.check().status == "ok"  # one cadence of grace after start
    clock.now += 1
    assert inputs.check().reasons == [
        "input syi.calculated: nothing received for 181 s (expected at least every 180 s)"]
    inputs.seen("syi.calculated", at=clock.now - 10)  # its Kafka timestamp
    report = inputs.check()
    assert report.status == "ok" and report.model_extra["input_age_s"] == {"syi.calculated": 10.0, "trad.tbill": None}
    clock.now += 171
    assert inputs.check().reasons == ["input syi.calculated: newest message 181 s old (expected at least every 180 s)"]


def test_the_business_day_cadence_of_fred_tolerates_a_long_weekend():
    clock = Clock(1_700_000_000.0)
    inputs = InputWatch(["trad.tbill"], clock=clock)
    inputs.seen("trad.tbill")
    clock.now += 3.5 * 86400  # Friday's value on Tuesday morning after a Monday holiday
    assert inputs.check().status == "ok"


def test_a_future_timestamp_does_not_make_an_input_fresh_later():
    clock = Clock(1_700_000_000.0)
    inputs = InputWatch(["cc.prices"], clock=clock, started=clock.now - 3600)
    inputs.seen("cc.prices", at=clock.now + 86400 * 365 * 75)  # a tick stamped in 2100
    clock.now += 61
    assert inputs.check().status == "degraded"


def test_saw_message_reads_the_kafka_timestamp_or_the_arrival():
    class Message:
        def __init__(self, kind: int, ms: int) -> None:
            self._timestamp = (kind, ms)

        def topic(self) -> str:
            return "cc.orderbook"

        def timestamp(self) -> tuple[int, int]:
            return self._timestamp

    clock = Clock(1_700_000_000.0)
    inputs = InputWatch(["cc.orderbook"], clock=clock)
    inputs.saw_message(Message(TIMESTAMP_CREATE_TIME, int((clock.now - 30) * 1000)))
    assert inputs.ages() == {"cc.orderbook": 30.0}
    inputs.saw_message(Message(TIMESTAMP_NOT_AVAILABLE, 0))
    assert inputs.ages() == {"cc.orderbook": 0.0}


def test_topics_without_a_cadence_are_not_judged():
    clock = Clock()
    inputs = InputWatch(["syi.calculated.dlq"], clock=clock)
    clock.now += 10**9
    assert inputs.check().status == "ok"


# --------------------------------------------------------------------------- Supervisor


@pytest.fixture
def service() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"  # the collectors are process-wide: each test its own label


def failures(service: str, task: str) -> float | None:
    return REGISTRY.get_sample_value("syi_task_failures_total", {"service": service, "task": task})


async def test_a_failing_task_is_logged_counted_retried_with_backoff_and_degraded_until_it_progresses(service):
    supervisor = Supervisor(service, initial_s=1.0, cap_s=8.0)
    waits: list[float] = []
    runs = 0
    progress = asyncio.Event()

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        assert supervisor.check().status == "degraded"  # while it waits for the retry

    async def body() -> None:
        nonlocal runs
        runs += 1
        if runs <= 4:
            raise RuntimeError(f"boom {runs}")
        supervisor.progressed("poll")
        progress.set()

    with capture_logs() as logs:
        await supervisor.run("poll", body, sleep=sleep)
    assert runs == 5 and progress.is_set()
    assert failures(service, "poll") == 4.0
    # jittered exponential backoff: half fixed, half random, capped
    for attempt, wait in enumerate(waits):
        delay = min(8.0, 2.0**attempt)
        assert delay / 2 <= wait <= delay
    failed = [e for e in logs if e["event"] == "task_failed"]
    assert [e["attempt"] for e in failed] == [1, 2, 3, 4] and failed[0]["log_level"] == "error"
    assert isinstance(failed[0]["exc_info"], RuntimeError)  # rendered as the traceback by format_exc_info
    assert [e["after_failures"] for e in logs if e["event"] == "task_recovered"] == [4]
    assert supervisor.check().body() == {"status": "ok", "reasons": []}


async def test_the_report_names_the_task_and_its_last_error(service):
    supervisor = Supervisor(service)
    supervisor.failed("stream", ValueError("bad frame"))
    supervisor.failed("stream", ValueError("bad frame again"))
    assert supervisor.check().body() == {
        "status": "degraded",
        "reasons": ["task stream: failed 2x since its last progress, retrying (ValueError: bad frame again)"]}
    supervisor.progressed("stream")
    assert supervisor.check().status == "ok"
    assert supervisor.failed("stream", ValueError("x")) <= 1.0  # the backoff starts afresh after progress


async def test_fatal_exceptions_and_cancellation_end_the_task(service):
    supervisor = Supervisor(service)

    class ConfigError(Exception):
        pass

    async def misconfigured() -> None:
        raise ConfigError("SYI_X is wrong")

    with pytest.raises(ConfigError):
        await supervisor.run("x", misconfigured, fatal=(ConfigError,))
    assert failures(service, "x") is None

    async def forever() -> None:
        await asyncio.sleep(3600)

    task = asyncio.create_task(supervisor.run("y", forever))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert supervisor.check().status == "ok"


def test_guard_runs_one_step_of_a_synchronous_loop(service):
    supervisor = Supervisor(service, initial_s=0.5)
    calls = []

    def bad() -> None:
        raise OSError("disk")

    wait = supervisor.guard("write_loop", bad)
    assert wait is not None and 0.25 <= wait <= 0.5
    assert supervisor.check().status == "degraded" and failures(service, "write_loop") == 1.0
    assert supervisor.guard("write_loop", lambda: calls.append(1)) is None
    assert calls == [1] and supervisor.check().status == "ok"
