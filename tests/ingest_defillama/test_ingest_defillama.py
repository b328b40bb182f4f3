"""ingest-defillama against the real replay server and the session's real Kafka broker."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from ingest_defillama.settings import CANDIDATES, Settings
from ingest_defillama.worker import DefiLlamaIngester
from syi_shared.models import MarketCap, PoolYield, PriceTick
from syi_shared.settings import ServiceSettings
from syi_shared.timefmt import now_text, parse_utc
from tests.replay_server.harness import ReplayServer, TopicTail, metric, running, snapshot, wait_until

pytestmark = pytest.mark.integration

SERVICE = "ingest-defillama"
TOPICS = ["dl.apy", "ex.mktcap", "cc.prices"]


def settings_for(replay: ReplayServer, kafka: ServiceSettings, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka.kafka_bootstrap_servers, "defillama_yields_url": replay.url,
        "defillama_stablecoins_url": replay.url, "cryptocompare_url": replay.url, "health_port": 0,
        "defillama_pools_interval_s": 3600, "defillama_stablecoins_interval_s": 3600, "retry_initial_s": 0.2,
        "cryptocompare_api_key": None,
    }
    return Settings(**{**values, **overrides})


def errors(source: str, kind: str) -> float:
    return metric("syi_source_errors_total", service=SERVICE, source=source, kind=kind)


def expected_pools(position_s: float) -> dict[str, dict[str, Any]]:
    return {p["pool"]: p for p in snapshot("pools", position_s)["data"]
            if p["stablecoin"] is True and p["exposure"] == "single" and p["symbol"] in CANDIDATES}


async def test_publishes_pools_market_caps_and_usd_prices_from_the_recording(
    replay: ReplayServer, provisioned: ServiceSettings
) -> None:
    replay.control(seek_s=7300, speed=0)  # the depeg hour: second pools snapshot, USDC below peg
    pools = expected_pools(7300)
    assets = {a["symbol"]: a for a in snapshot("stablecoins", 7300)["peggedAssets"] if a["symbol"] in CANDIDATES}
    tail = TopicTail(provisioned, TOPICS)
    started = now_text()
    ingester = DefiLlamaIngester(settings_for(replay, provisioned))
    async with running(ingester):
        await tail.wait_for(lambda _: len(tail.of("dl.apy")) >= len(pools) and len(tail.of("ex.mktcap")) >= 6
                            and len(tail.of("cc.prices", venue="defillama")) >= 6, what="one poll of each")
        await wait_until(lambda: ingester.health.report()["status"] == "ok", what="healthy")
    finished = now_text()

    published = {m["pool"]: m for m in tail.of("dl.apy")}
    assert published.keys() == pools.keys()  # each once: LPs, non-stable pools, look-alike symbols dropped
    for pool_id, value in published.items():
        source = pools[pool_id]
        assert (value["project"], value["chain"], value["symbol"], value["tvl_usd"], value["apy_base_pct"],
                value["apy_reward_pct"], value["stablecoin"], value["exposure"]) == (
            source["project"], source["chain"], source["symbol"], source["tvlUsd"], source["apyBase"],
            source["apyReward"], True, "single")
        assert started <= value["event_time"] == value["ingest_time"] <= finished
        PoolYield.model_validate(value)
    for cap in tail.of("ex.mktcap"):
        asset = assets[cap["symbol"]]
        assert (cap["market_cap_usd"], cap["price_usd"], cap["source"]) == (
            asset["circulating"]["peggedUSD"], asset["price"], "defillama")
        MarketCap.model_validate(cap)
    prices = {p["symbol"]: p for p in tail.of("cc.prices", venue="defillama")}
    assert prices.keys() == set(CANDIDATES)
    assert prices["USDC"]["price"] == assets["USDC"]["price"] < 0.98  # the depeg shows in DefiLlama's price
    assert all((p["quote"], p["bid"], p["ask"]) == ("USD", None, None) for p in prices.values())
    assert {m["key"] for m in tail.messages if m["topic"] == "cc.prices"} == {f"{s}.defillama" for s in CANDIDATES}
    assert all(PriceTick.model_validate(p) for p in prices.values())
    # no key, no CryptoCompare: said on /healthz, never called
    assert ingester.health.report()["disabled"] == {"cryptocompare": "SYI_CRYPTOCOMPARE_API_KEY is not set"}
    assert replay.requests("/data/") == []
    tail.close()


async def test_server_errors_and_malformed_bodies_are_counted_and_retried_publishing_nothing_invalid(
    replay: ReplayServer, provisioned: ServiceSettings
) -> None:
    replay.control(seek_s=0, speed=0)
    replay.control(status=500, times=2, path="/stablecoins")
    replay.control(malformed=True, times=1, path="/pools")
    server_errors, malformed = errors("defillama_stablecoins", "http_5xx"), errors("defillama_pools", "malformed")
    tail = TopicTail(provisioned, TOPICS)
    with capture_logs() as logs:
        async with running(DefiLlamaIngester(settings_for(replay, provisioned))):
            await tail.wait_for(lambda _: len(tail.of("dl.apy")) >= len(expected_pools(0))
                                and len(tail.of("ex.mktcap")) >= 6, what="publishing after the retries")
    assert errors("defillama_stablecoins", "http_5xx") == server_errors + 2
    assert errors("defillama_pools", "malformed") == malformed + 1
    assert [r["status"] for r in replay.requests("/stablecoins")] == [500, 500, 200]
    assert [r["status"] for r in replay.requests("/pools")] == [200, 200]  # the first body was cut in half
    # the truncated body published nothing: every pool exactly once, from the good poll
    assert len(tail.of("dl.apy")) == len({m["pool"] for m in tail.of("dl.apy")}) == len(expected_pools(0))
    warnings = [e for e in logs if e["event"] == "source_error"]
    assert {(e["source"], e["kind"]) for e in warnings} == {("defillama_stablecoins", "http_5xx"),
                                                           ("defillama_pools", "malformed")}
    tail.close()


async def test_cryptocompare_prices_with_a_key_and_its_http_200_error_envelope(
    replay: ReplayServer, provisioned: ServiceSettings
) -> None:
    replay.control(seek_s=600, speed=0)
    envelope = {"Response": "Error", "Message": "You are over your rate limit please upgrade your account!",
                "HasWarning": False, "Type": 99, "RateLimit": {}, "Data": {}}
    replay.control(status=200, body=envelope, times=1, path="/data/pricemultifull")
    limited = errors("cryptocompare", "rate_limited")
    tail = TopicTail(provisioned, ["cc.prices"])
    raw = snapshot("cryptocompare", 600)["RAW"]
    settings = settings_for(replay, provisioned, cryptocompare_api_key="test-key", cryptocompare_interval_s=3600)
    started = now_text()
    async with running(DefiLlamaIngester(settings)):
        await tail.wait_for(lambda _: len(tail.of("cc.prices", venue="cryptocompare")) >= 6, what="CC prices")
    assert errors("cryptocompare", "rate_limited") == limited + 1
    for tick in tail.of("cc.prices", venue="cryptocompare"):
        assert tick["price"] == raw[tick["symbol"]]["USD"]["PRICE"] and tick["quote"] == "USD"
        # the replay moved LASTUPDATE onto the present: event time from the source, before receipt
        lag = (parse_utc(tick["ingest_time"]) - parse_utc(tick["event_time"])).total_seconds()
        assert 0 <= lag < 60 and tick["ingest_time"] >= started
    assert {t["symbol"] for t in tail.of("cc.prices", venue="cryptocompare")} == set(CANDIDATES)
    tail.close()


async def test_source_values_outside_the_bounds_are_logged_counted_and_skipped(
    replay: ReplayServer, provisioned: ServiceSettings
) -> None:
    replay.control(seek_s=0, speed=0)
    stablecoins = snapshot("stablecoins", 0)
    for asset in stablecoins["peggedAssets"]:
        if asset["symbol"] == "USDC":
            asset["circulating"] = {**asset["circulating"], "peggedUSD": 1e308}  # not a market cap
            break
    pools = snapshot("pools", 0)
    bad_pool = next(p for p in pools["data"] if p["pool"] in expected_pools(0))
    bad_pool["apyBase"] = 1e6  # percent, not a plausible yield
    replay.control(status=200, body=stablecoins, times=1, path="/stablecoins")
    replay.control(status=200, body=pools, times=1, path="/pools")
    invalid_caps, invalid_pools = errors("defillama_stablecoins", "invalid"), errors("defillama_pools", "invalid")
    tail = TopicTail(provisioned, TOPICS)
    with capture_logs() as logs:
        async with running(DefiLlamaIngester(settings_for(replay, provisioned))):
            await tail.wait_for(lambda _: len(tail.of("dl.apy")) >= len(expected_pools(0)) - 1
                                and len(tail.of("ex.mktcap")) >= 5 and len(tail.of("cc.prices", venue="defillama")) >= 6,
                                what="one poll of each, less the two bad values")
    assert errors("defillama_stablecoins", "invalid") == invalid_caps + 1
    assert errors("defillama_pools", "invalid") == invalid_pools + 1
    assert "USDC" not in {m["symbol"] for m in tail.of("ex.mktcap")}
    assert "USDC" in {m["symbol"] for m in tail.of("cc.prices", venue="defillama")}  # its price was fine
    assert bad_pool["pool"] not in {m["pool"] for m in tail.of("dl.apy")}
    details = sorted(e["detail"] for e in logs if e["event"] == "source_error" and e["kind"] == "invalid")
    assert details == ["out_of_range: apy_base_pct: 1000000.0 is above 10000",
                       "out_of_range: market_cap_usd: 1e+308 is above 1e13"]
    tail.close()


async def test_an_exception_in_a_poll_loop_is_logged_counted_retried_and_degraded_until_it_polls_again(
    replay: ReplayServer, provisioned: ServiceSettings
) -> None:
    replay.control(seek_s=0, speed=0)
    ingester = DefiLlamaIngester(settings_for(replay, provisioned))
    broken = True
    poll_stablecoins = ingester.poll_stablecoins

    async def failing_poll() -> None:  # not a SourceError: a bug, which used to end the loop silently
        if broken:
            raise KeyError("injected: a bug in the stablecoins loop")
        await poll_stablecoins()

    ingester.poll_stablecoins = failing_poll  # type: ignore[method-assign]
    task = "poll_defillama_stablecoins"
    before = metric("syi_task_failures_total", service=SERVICE, task=task)
    with capture_logs() as logs:
        async with running(ingester):
            await wait_until(lambda: metric("syi_task_failures_total", service=SERVICE, task=task) >= before + 2,
                             what="the failing loop to be retried")
            report = ingester.health.report()
            broken = False
            await wait_until(lambda: ingester.health.report()["status"] == "ok", what="health ok again")
    assert report["status"] == "degraded"
    assert any(reason.startswith(f"task {task}: failed") and "injected" in reason for reason in report["reasons"])
    failed = [e for e in logs if e["event"] == "task_failed"]
    assert failed and failed[0]["task"] == task and isinstance(failed[0]["exc_info"], KeyError)
    assert [e["task"] for e in logs if e["event"] == "task_recovered"] == [task]
