"""ingest-binance against the real replay server and the session's real Kafka broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from structlog.testing import capture_logs

from ingest_binance.settings import Settings
from ingest_binance.worker import BinanceIngester, ConfigError
from syi_shared.models import OrderBook, PriceTick
from syi_shared.settings import ServiceSettings
from syi_shared.timefmt import format_utc, now_text
from tests.conftest import free_port
from tests.replay_server.harness import ReplayServer, TopicTail, frame_at, metric, running, wait_until

pytestmark = pytest.mark.integration

TOPICS = ["cc.prices", "cc.orderbook"]
SERVICE = "ingest-binance"


def settings_for(replay: ReplayServer, kafka: ServiceSettings, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka.kafka_bootstrap_servers, "binance_rest_url": replay.url,
        "binance_ws_url": replay.ws_url, "binance_pairs": ["USDCUSDT", "DAIUSDT"], "health_port": 0,
        "binance_reconnect_initial_s": 0.2,
    }
    return Settings(**{**values, **overrides})


def errors(source: str, kind: str) -> float:
    return metric("syi_source_errors_total", service=SERVICE, source=source, kind=kind)


def at(epoch: float) -> str:
    return format_utc(datetime.fromtimestamp(epoch, UTC))


def binance(tail: TopicTail, topic: str, **fields: Any) -> list[dict[str, Any]]:
    return tail.of(topic, venue="binance", **fields)


async def test_publishes_the_recorded_quotes_and_books_as_exact_floats(
    replay: ReplayServer, provisioned: ServiceSettings
) -> None:
    replay.control(seek_s=1000, speed=0)  # frozen market: the values are known exactly
    tail = TopicTail(provisioned, TOPICS)
    started = now_text()
    async with running(BinanceIngester(settings_for(replay, provisioned))):
        await tail.wait_for(lambda _: all(binance(tail, t, pair=p) for t in TOPICS for p in ("USDCUSDT", "DAIUSDT")),
                            what="a price and a book per pair")
    finished = now_text()
    for pair, base in (("USDCUSDT", "USDC"), ("DAIUSDT", "DAI")):
        ticker = frame_at(f"{pair.lower()}@bookTicker", 1000)
        bid, ask = Decimal(ticker["b"]), Decimal(ticker["a"])
        price = binance(tail, "cc.prices", pair=pair)[0]
        assert started <= price["event_time"] == price["ingest_time"] <= finished  # receive time stands in
        assert {k: v for k, v in price.items() if not k.endswith("_time")} == {
            "schema_version": 1, "symbol": base, "venue": "binance", "pair": pair, "base": base, "quote": "USDT",
            "bid": float(bid), "ask": float(ask), "price": float((bid + ask) / 2)}
        depth = frame_at(f"{pair.lower()}@depth20@100ms", 1000)
        book = binance(tail, "cc.orderbook", pair=pair)[0]
        assert book["bids"] == [[float(Decimal(p)), float(Decimal(q))] for p, q in depth["bids"]]
        assert book["asks"] == [[float(Decimal(p)), float(Decimal(q))] for p, q in depth["asks"]]
    assert {m["key"] for m in tail.messages} == {"USDC.binance", "DAI.binance"}
    tail.close()


async def test_unknown_and_halted_pairs_are_skipped_with_a_warning(
    replay: ReplayServer, provisioned: ServiceSettings
) -> None:
    tail = TopicTail(provisioned, ["cc.prices"])
    with capture_logs() as logs:
        ingester = BinanceIngester(settings_for(replay, provisioned, binance_pairs=["FOOUSDT", "USDCUSDT", "PAXUSDT"]))
        async with running(ingester):
            await tail.wait_for(lambda _: binance(tail, "cc.prices"), what="a USDC price")
    skipped = {e["pair"]: e["reason"] for e in logs if e["event"] == "pair_skipped" and e["log_level"] == "warning"}
    assert skipped == {"FOOUSDT": "unknown to Binance (-1121 Invalid symbol)",
                       "PAXUSDT": "status BREAK, not TRADING"}
    assert ingester.health.pairs == ["USDCUSDT"] and set(ingester.health.skipped_pairs) == set(skipped)
    assert {m["pair"] for m in binance(tail, "cc.prices")} == {"USDCUSDT"}
    # the batch call failed on the unknown symbol; each pair was then asked alone
    assert [r["status"] for r in replay.requests("/api/v3/exchangeInfo")] == [400, 400, 200, 200]
    tail.close()


async def test_no_trading_pair_is_a_configuration_error(replay: ReplayServer, provisioned: ServiceSettings) -> None:
    ingester = BinanceIngester(settings_for(replay, provisioned, binance_pairs=["FOOUSDT", "BUSDUSDT"]))
    with pytest.raises(ConfigError, match="SYI_BINANCE_PAIRS"):
        await asyncio.wait_for(ingester.run(asyncio.Event()), 30)


async def test_http_429_at_start_waits_for_retry_after(replay: ReplayServer, provisioned: ServiceSettings) -> None:
    replay.control(fail=429, retry_after=2, times=1, path="/api/v3/exchangeInfo")
    before = errors("binance_rest", "http_429")
    ingester = BinanceIngester(settings_for(replay, provisioned))
    async with running(ingester):
        await wait_until(lambda: ingester.markets, timeout=30, what="pairs checked")
    calls = replay.requests("/api/v3/exchangeInfo")
    assert [c["status"] for c in calls] == [429, 200]
    assert calls[1]["at"] - calls[0]["at"] >= 1.95
    assert errors("binance_rest", "http_429") == before + 1


async def test_dropped_stream_reconnects_and_resumes(replay: ReplayServer, provisioned: ServiceSettings) -> None:
    tail = TopicTail(provisioned, ["cc.prices"])
    ingester = BinanceIngester(settings_for(replay, provisioned))
    reconnects = metric("syi_source_reconnects_total", service=SERVICE, source="binance_ws")
    closed = errors("binance_ws", "closed")
    async with running(ingester):
        await tail.wait_for(lambda _: binance(tail, "cc.prices"), what="a first price")
        replay.control(drop_ws=True)
        dropped = now_text()
        await wait_until(lambda: metric("syi_source_reconnects_total", service=SERVICE,
                                        source="binance_ws") > reconnects, timeout=30, what="a reconnect")
        await tail.wait_for(lambda _: any(m["ingest_time"] > dropped for m in binance(tail, "cc.prices")),
                            what="prices after the drop")
        await wait_until(lambda: ingester.health.mode == "stream", timeout=30, what="stream mode")
    assert errors("binance_ws", "closed") == closed + 1
    assert [r["status"] for r in replay.requests("/stream")] == [101, 101]
    tail.close()


async def test_server_shutdown_event_reconnects_without_backoff(
    replay: ReplayServer, provisioned: ServiceSettings
) -> None:
    with capture_logs() as logs:
        ingester = BinanceIngester(settings_for(replay, provisioned, binance_reconnect_initial_s=5.0))
        async with running(ingester):
            await wait_until(lambda: ingester.health.mode == "stream", timeout=30, what="stream mode")
            replay.control(server_shutdown=True)
            await wait_until(lambda: len(replay.requests("/stream")) == 2, timeout=30, what="a second connection")
    reconnecting = [e for e in logs if e["event"] == "reconnecting"]
    assert reconnecting[0]["reason"] == "server_shutdown" and reconnecting[0]["delay_s"] == 0


async def test_connection_is_renewed_before_its_maximum_age(replay: ReplayServer, provisioned: ServiceSettings) -> None:
    with capture_logs() as logs:
        ingester = BinanceIngester(settings_for(replay, provisioned, binance_ws_max_age_s=1.0))
        async with running(ingester):
            await wait_until(lambda: len(replay.requests("/stream")) >= 3, timeout=30, what="two renewals")
    assert [e["reason"] for e in logs if e["event"] == "reconnecting"][:2] == ["renew", "renew"]
    assert not [e for e in logs if e["event"] == "source_error"]  # renewals are not errors


async def test_rest_polling_keeps_prices_flowing_while_the_stream_is_refused(
    replay: ReplayServer, provisioned: ServiceSettings
) -> None:
    tail = TopicTail(provisioned, TOPICS)
    server_errors = errors("binance_rest", "http_5xx")
    ingester = BinanceIngester(settings_for(replay, provisioned, binance_fallback_after_s=1.0,
                                            binance_rest_poll_interval_s=0.3, binance_publish_interval_s=0.2))
    async with running(ingester):
        await tail.wait_for(lambda _: binance(tail, "cc.prices"), what="a first price")
        replay.control(refuse_ws_s=6)
        replay.control(status=500, times=1, path="/api/v3/depth")
        down = time.time()
        replay.control(drop_ws=True)
        await wait_until(lambda: ingester.health.mode == "rest_fallback", timeout=20, what="REST fallback")
        # while every handshake is refused, REST is the only way values can arrive
        window = (at(down + 1.5), at(down + 5.5))
        for topic in TOPICS:
            for pair in ("USDCUSDT", "DAIUSDT"):
                await tail.wait_for(
                    lambda _, t=topic, p=pair: any(window[0] < m["ingest_time"] < window[1]
                                                   for m in binance(tail, t, pair=p)),
                    timeout=30, what=f"{topic} {pair} from REST")
        await wait_until(lambda: ingester.health.mode == "stream", timeout=40, what="back to the stream")
    assert errors("binance_rest", "http_5xx") == server_errors + 1
    assert errors("binance_ws", "handshake") >= 1
    assert {r["status"] for r in replay.requests("/api/v3/ticker/bookTicker")} == {200}
    tail.close()


async def test_malformed_and_impossible_frames_are_counted_and_not_published(
    replay: ReplayServer, provisioned: ServiceSettings
) -> None:
    tail = TopicTail(provisioned, TOPICS)
    malformed, invalid = errors("binance_ws", "malformed"), errors("binance_ws", "invalid")
    async with running(BinanceIngester(settings_for(replay, provisioned, binance_publish_interval_s=0.1))):
        await tail.wait_for(lambda _: binance(tail, "cc.prices"), what="a first price")
        replay.control(malformed_ws=2, crossed_ws=2)
        await wait_until(lambda: errors("binance_ws", "malformed") == malformed + 2
                         and errors("binance_ws", "invalid") == invalid + 4, timeout=20, what="counted errors")
        mark = now_text()
        await tail.wait_for(lambda _: any(m["ingest_time"] > mark for m in binance(tail, "cc.prices")),
                            what="prices after the bad frames")
    for message in tail.messages:
        model = PriceTick if message["topic"] == "cc.prices" else OrderBook
        value = model.model_validate_json(message["raw"])
        assert getattr(value, "bid", None) != 1.01  # the crossed quote never went out
    tail.close()


@pytest.mark.e2e
def test_service_process_reports_health_and_stops_cleanly_on_sigterm(
    replay: ReplayServer, provisioned: ServiceSettings
) -> None:
    port = free_port()
    env = {**os.environ, "SYI_KAFKA_BOOTSTRAP_SERVERS": provisioned.kafka_bootstrap_servers or "",
           "SYI_BINANCE_REST_URL": replay.url, "SYI_BINANCE_WS_URL": replay.ws_url, "SYI_BINANCE_PAIRS": "USDCUSDT",
           "SYI_HEALTH_PORT": str(port), "SYI_LOG_FORMAT": "json"}
    tail = TopicTail(provisioned, ["cc.prices"])
    process = subprocess.Popen([sys.executable, "-m", "ingest_binance"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        health: dict[str, Any] = {}
        while health.get("mode") != "stream" and time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
            except httpx.HTTPError:
                time.sleep(0.2)
        assert health["status"] == "ok" and health["mode"] == "stream" and health["pairs"] == ["USDCUSDT"]
        while not binance(tail, "cc.prices") and time.monotonic() < deadline:
            time.sleep(0.2)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'syi_messages_published_total{service="ingest-binance",topic="cc.prices"}' in metrics
        assert 'syi_source_last_success_timestamp_seconds{service="ingest-binance",source="binance_ws"}' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    events = [orjson.loads(line) for line in stderr.splitlines() if line.startswith(b"{")]
    assert events[-1]["event"] == "stopped" and events[-1]["unflushed"] == 0
    # what `kcat -C -t cc.prices` shows: plain JSON with exactly the docs/topics.md fields
    raw = orjson.loads(tail.drain()[0]["raw"])
    assert set(raw) == {"schema_version", "symbol", "venue", "pair", "base", "quote", "bid", "ask", "price",
                        "event_time", "ingest_time"}
    tail.close()


async def test_an_exception_in_the_stream_loop_is_logged_counted_retried_and_degraded_until_it_streams_again(
    replay: ReplayServer, provisioned: ServiceSettings
) -> None:
    replay.control(seek_s=1000, speed=0)
    ingester = BinanceIngester(settings_for(replay, provisioned))
    broken = True
    on_frame = ingester._on_frame

    def failing_on_frame(frame: str | bytes, received: str) -> bool:  # a bug that strikes every frame
        if broken:
            raise RuntimeError("injected: a bug in the stream loop")
        return on_frame(frame, received)

    ingester._on_frame = failing_on_frame  # type: ignore[method-assign]
    before = metric("syi_task_failures_total", service=SERVICE, task="stream")
    with capture_logs() as logs:
        async with running(ingester):
            await wait_until(lambda: metric("syi_task_failures_total", service=SERVICE, task="stream") >= before + 2,
                             timeout=30, what="the failing stream loop to be retried")
            report = ingester.health.report()
            broken = False
            await wait_until(lambda: ingester.health.report()["status"] == "ok", timeout=30, what="health ok again")
            assert ingester.health.mode == "stream"
    assert report["status"] == "degraded"
    assert any(reason.startswith("task stream: failed") and "injected" in reason for reason in report["reasons"])
    failed = [e for e in logs if e["event"] == "task_failed"]
    assert failed and failed[0]["task"] == "stream" and isinstance(failed[0]["exc_info"], RuntimeError)
    assert "stream" in [e["task"] for e in logs if e["event"] == "task_recovered"]


@pytest.mark.parametrize("task", ["flush", "deliver"])
async def test_one_exception_in_the_flush_or_deliver_loop_is_counted_degrades_and_the_loop_runs_again(
    replay: ReplayServer, provisioned: ServiceSettings, task: str
) -> None:
    replay.control(seek_s=1000, speed=1)
    ingester = BinanceIngester(settings_for(replay, provisioned))
    # the throttle's flusher asks for due values; the publisher's pump serves delivery reports
    owner, name = (ingester.throttle, "due") if task == "flush" else (ingester.publisher, "pump")
    original = getattr(owner, name)
    calls = 0

    def fails_once(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError(f"injected: a bug in the {task} loop")
        return original(*args)

    setattr(owner, name, fails_once)
    before = metric("syi_task_failures_total", service=SERVICE, task=task)
    with capture_logs() as logs:
        async with running(ingester):
            await wait_until(lambda: metric("syi_task_failures_total", service=SERVICE, task=task) == before + 1,
                             timeout=30, what=f"the {task} loop to fail")
            report = ingester.health.report()
            await wait_until(lambda: ingester.health.report()["status"] == "ok", timeout=30, what="health ok again")
            delivered = metric("syi_messages_delivered_total", service=SERVICE, topic="cc.prices")
            await wait_until(lambda: metric("syi_messages_delivered_total", service=SERVICE, topic="cc.prices")
                             > delivered, timeout=30, what="values delivered after the recovery")
    assert report["status"] == "degraded"
    assert any(reason.startswith(f"task {task}: failed 1x") and "injected" in reason for reason in report["reasons"])
    failed = [e for e in logs if e["event"] == "task_failed"]
    assert [e["task"] for e in failed] == [task] and isinstance(failed[0]["exc_info"], RuntimeError)
    assert task in [e["task"] for e in logs if e["event"] == "task_recovered"]
    assert metric("syi_task_failures_total", service=SERVICE, task=task) == before + 1
