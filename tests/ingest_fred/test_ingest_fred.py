"""ingest-fred against the real replay server and the session's real Kafka broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import orjson
import pytest
from structlog.testing import capture_logs

from ingest_fred.settings import Settings
from ingest_fred.worker import FredIngester
from syi_shared.settings import ServiceSettings
from syi_shared.timefmt import now_text
from tests.conftest import free_port
from tests.replay_server.harness import MANIFEST, ReplayServer, TopicTail, metric, running, snapshot, wait_until

KEY = "0123456789abcdef0123456789abcdef"


def settings_for(replay: ReplayServer, kafka: ServiceSettings, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"kafka_bootstrap_servers": kafka.kafka_bootstrap_servers, "fred_url": replay.url,
                              "fred_api_key": KEY, "health_port": 0, "fred_poll_interval_s": 0.3}
    return Settings(**{**values, **overrides})


def test_key_comes_from_fred_api_key_or_syi_fred_api_key_and_stays_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYI_FRED_API_KEY", raising=False)
    monkeypatch.setenv("FRED_API_KEY", KEY)
    settings = Settings()
    assert settings.fred_api_key is not None and settings.fred_api_key.get_secret_value() == KEY
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
    monkeypatch.delenv("FRED_API_KEY")
    monkeypatch.setenv("SYI_FRED_API_KEY", "other")
    assert Settings().fred_api_key.get_secret_value() == "other"


@pytest.mark.integration
async def test_each_observation_is_published_once_across_polls_and_restarts(
    replay: ReplayServer, provisioned: ServiceSettings, fred_series: list[str]
) -> None:
    series = fred_series[0]
    replay.control(seek_s=0, speed=0)
    tail = TopicTail(provisioned, ["trad.tbill"])
    settings = settings_for(replay, provisioned, fred_series=series)
    newest = [o for o in snapshot("fred_dtb3", 0)["observations"] if o["value"] != "."][-1]
    started = now_text()

    def polls() -> int:
        return len(replay.requests("/fred/"))

    async with running(FredIngester(settings)):
        await tail.wait_for(lambda _: tail.of("trad.tbill", series=series), what="the newest observation")
        await wait_until(lambda: polls() >= 4, what="more polls")
        first = tail.of("trad.tbill", series=series)
        assert len(first) == 1  # the "." row (a holiday) is skipped; the newest real value, once
        assert {k: v for k, v in first[0].items() if not k.endswith("_time")} == {
            "schema_version": 1, "series": series, "observation_date": newest["date"],
            "rate_pct": float(newest["value"]), "basis": "discount", "source": "fred"}
        assert started <= first[0]["event_time"] == first[0]["ingest_time"]  # first seen now, not the date
        replay.control(seek_s=MANIFEST["scenario"]["fred_new_observation"]["at_s"] + 1)  # the next day's value
        await tail.wait_for(lambda _: len(tail.of("trad.tbill", series=series)) == 2, what="the new observation")
        seen = polls()
        await wait_until(lambda: polls() >= seen + 3, what="more polls")
    assert [m["observation_date"] for m in tail.of("trad.tbill", series=series)] == [newest["date"], "2026-01-20"]

    restarted = FredIngester(settings)  # reads trad.tbill back: nothing is published twice
    async with running(restarted):
        seen = polls()
        await wait_until(lambda: polls() >= seen + 3, what="polls after the restart")
    assert restarted.last_date == "2026-01-20"
    assert len(tail.of("trad.tbill", series=series)) == 2
    assert {m["key"] for m in tail.messages} == {series}
    tail.close()


def start(env_overrides: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("FRED_API_KEY", "SYI_FRED_API_KEY")}
    env.update({"SYI_HEALTH_PORT": str(port), "SYI_LOG_FORMAT": "json", **env_overrides})
    return subprocess.Popen([sys.executable, "-m", "ingest_fred"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def health(port: int, path: str = "/healthz") -> tuple[int, dict[str, Any]]:
    deadline = time.monotonic() + 60
    while True:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2)
            return response.status_code, response.json()
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    return [orjson.loads(line) for line in stderr.splitlines() if line.startswith(b"{")]


@pytest.mark.e2e
def test_without_a_key_it_stays_up_degraded_and_names_the_missing_setting(
    replay: ReplayServer, provisioned: ServiceSettings
) -> None:
    port = free_port()
    process = start({"SYI_FRED_URL": replay.url, "SYI_KAFKA_BOOTSTRAP_SERVERS": provisioned.kafka_bootstrap_servers},
                    port)
    try:
        status, body = health(port)
        # alive (a restart cannot conjure a key), not ready, and it says why
        assert status == 200 and body["status"] == "degraded"
        assert any("FRED_API_KEY" in reason for reason in body["reasons"])
        assert health(port, "/readyz") == (503, body)
        time.sleep(1.0)
        assert process.poll() is None  # no crash loop: it waits for SIGTERM
    finally:
        events = stop(process)
    missing = [e for e in events if e["event"] == "fred_api_key_missing"]
    assert missing and missing[0]["level"] == "error" and missing[0]["setting"] == "FRED_API_KEY"
    assert replay.requests("/fred/") == []


@pytest.mark.e2e
def test_the_key_never_reaches_logs_and_errors_are_retried_honouring_retry_after(
    replay: ReplayServer, provisioned: ServiceSettings, fred_series: list[str]
) -> None:
    series = fred_series[1]
    replay.control(seek_s=0, speed=0)
    # FRED's own error text for a bad key, here echoing the key back, then a 429, then a 500
    replay.control(status=400, times=1, path="/fred/",
                   body={"error_code": 400, "error_message": f"Bad Request.  The value for variable api_key={KEY} "
                                                             "is not registered."})
    replay.control(fail=429, retry_after=1, times=1, path="/fred/")
    replay.control(status=500, times=1, path="/fred/")
    tail = TopicTail(provisioned, ["trad.tbill"])
    port = free_port()
    process = start({"FRED_API_KEY": KEY, "SYI_FRED_URL": replay.url, "SYI_FRED_SERIES": series,
                     "SYI_RETRY_INITIAL_S": "0.2", "SYI_LOG_LEVEL": "DEBUG",
                     "SYI_KAFKA_BOOTSTRAP_SERVERS": provisioned.kafka_bootstrap_servers}, port)
    try:
        deadline = time.monotonic() + 60
        while not tail.of("trad.tbill", series=series) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert health(port)[1]["status"] == "ok"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    calls = replay.requests("/fred/")
    assert [c["status"] for c in calls] == [400, 429, 500, 200]
    assert calls[2]["at"] - calls[1]["at"] >= 0.95  # waited for Retry-After
    events = [orjson.loads(line) for line in stderr.splitlines() if line.startswith(b"{")]
    assert [e["kind"] for e in events if e["event"] == "source_error"] == ["http_4xx", "http_429", "http_5xx"]
    assert "***" in next(e["detail"] for e in events if e["event"] == "source_error")
    assert KEY.encode() not in stderr and KEY not in replay.log()
    assert 'syi_source_errors_total{kind="http_429",service="ingest-fred",source="fred"} 1.0' in metrics
    tail.close()


@pytest.mark.integration
async def test_a_rate_outside_the_bounds_is_logged_counted_and_skipped(provisioned: ServiceSettings) -> None:
    from structlog.testing import capture_logs

    from ingest_fred.fred_client import Observation
    from syi_shared.publisher import Publisher
    from tests.replay_server.harness import metric

    series = f"DTB3{os.urandom(4).hex().upper()}"
    settings = Settings(kafka_bootstrap_servers=provisioned.kafka_bootstrap_servers, fred_api_key=KEY,
                        fred_series=series, health_port=0)  # no polling here: the parser's output is handed in
    publisher = Publisher("ingest-fred", settings)
    ingester = FredIngester(settings, publisher=publisher)
    invalid = metric("syi_source_errors_total", service="ingest-fred", source="fred", kind="invalid")
    tail = TopicTail(provisioned, ["trad.tbill"])
    with capture_logs() as logs:
        # basis points where percent is meant: 412 is not a T-bill rate
        assert await ingester.publish_new([Observation("2026-01-19", 4.1), Observation("2026-01-20", 412.0)],
                                          publisher) == 0
        assert await ingester.publish_new([Observation("2026-01-20", 4.12)], publisher) == 1  # the corrected value
    assert publisher.flush(10) == 0
    assert metric("syi_source_errors_total", service="ingest-fred", source="fred", kind="invalid") == invalid + 1
    assert [e["detail"] for e in logs if e["event"] == "source_error"] == ["out_of_range: rate_pct: 412.0 is above 50"]
    assert ingester.last_date == "2026-01-20"
    deadline = time.monotonic() + 20
    while not tail.of("trad.tbill", series=series) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [m["rate_pct"] for m in tail.of("trad.tbill", series=series)] == [4.12]
    tail.close()


@pytest.mark.integration
async def test_an_exception_in_the_poll_loop_is_logged_counted_retried_and_degraded_until_it_polls_again(
    replay: ReplayServer, provisioned: ServiceSettings, fred_series: list[str]
) -> None:
    replay.control(seek_s=0, speed=0)
    ingester = FredIngester(settings_for(replay, provisioned, fred_series=fred_series[2]))
    broken = True
    publish_new = ingester.publish_new

    async def failing_publish(rows, publisher):  # not a FredError: a bug, which used to end the loop silently
        if broken:
            raise ZeroDivisionError("injected: a bug in the poll loop")
        return await publish_new(rows, publisher)

    ingester.publish_new = failing_publish  # type: ignore[method-assign]
    labels = {"service": "ingest-fred", "task": "poll_fred"}
    before = metric("syi_task_failures_total", **labels)
    with capture_logs() as logs:
        async with running(ingester):
            await wait_until(lambda: metric("syi_task_failures_total", **labels) >= before + 2,
                             what="the failing loop to be retried")
            report = ingester.health.report()
            broken = False
            await wait_until(lambda: ingester.health.report()["status"] == "ok", what="health ok again")
    assert report["status"] == "degraded"
    assert any(reason.startswith("task poll_fred: failed") and "injected" in reason for reason in report["reasons"])
    failed = [e for e in logs if e["event"] == "task_failed"]
    assert failed and failed[0]["task"] == "poll_fred" and isinstance(failed[0]["exc_info"], ZeroDivisionError)
    assert [e["task"] for e in logs if e["event"] == "task_recovered"] == ["poll_fred"]


async def test_the_last_date_advances_only_once_kafka_acknowledged_the_observation() -> None:
    import asyncio

    from ingest_fred.fred_client import Observation
    from syi_shared.kafka import make_producer
    from syi_shared.publisher import Publisher
    from tests.replay_server.harness import wait_until

    # a Kafka address where nothing listens: every delivery times out (quickly here) and is retried
    settings = Settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", fred_api_key=KEY, health_port=0)
    producer = make_producer(settings, **{"message.timeout.ms": 1000, "log_level": 2})  # no connect-refused noise
    publisher = Publisher("ingest-fred", producer=producer)
    ingester = FredIngester(settings, publisher=publisher)
    ingester.last_date = "2026-01-16"
    publishing = asyncio.create_task(
        ingester.publish_new([Observation("2026-01-19", 4.1), Observation("2026-01-20", 4.12)], publisher))
    try:
        await wait_until(lambda: publisher.counts["failed"] >= 2, timeout=30, what="the delivery to fail twice")
        assert not publishing.done()  # still retrying the first observation, not skipping it
        assert ingester.last_date == "2026-01-16"
        assert publisher.counts["published"] == 1  # the next one waits for the first's acknowledgement
    finally:
        publishing.cancel()
        await asyncio.gather(publishing, return_exceptions=True)
