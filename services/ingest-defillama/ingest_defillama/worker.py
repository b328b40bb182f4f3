"""ingest-defillama: poll /pools → dl.apy, /stablecoins → ex.mktcap + cc.prices (venue
defillama), and, when its key is set, CryptoCompare → cc.prices (venue cryptocompare).

Each source has its own loop: poll, publish, sleep the interval. A failed poll is logged
and counted, publishes nothing, and is retried sooner (backoff from `retry_initial_s` up to
the interval, at least a 429's Retry-After). The loops run under the health supervisor: any
other exception is logged with its traceback, counted, retried, and /healthz says degraded
until that loop completes a round again. A loop polls only when the publisher has room: while
Kafka is slow or away the newest value per key waits in its backlog and nothing is dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial

import httpx
from pydantic import BaseModel, ValidationError

from ingest_defillama import telemetry
from ingest_defillama.conversions import (
    cryptocompare_tick,
    keeps_pool,
    market_cap,
    pick_assets,
    pool_yield,
    usd_price,
    usd_tick,
)
from ingest_defillama.cryptocompare_client import CryptoCompareClient
from ingest_defillama.defillama_client import DefiLlamaClient
from ingest_defillama.settings import Settings
from ingest_defillama.source_http import USER_AGENT, SourceError
from ingest_defillama.telemetry import CRYPTOCOMPARE, POOLS, STABLECOINS, Health
from syi_shared.backoff import backoff_s
from syi_shared.logs import get_logger
from syi_shared.models import validation_reason
from syi_shared.publisher import Publisher
from syi_shared.timefmt import now_text
from syi_shared.topics import CC_PRICES, DL_APY, EX_MKTCAP


class DefiLlamaIngester:
    def __init__(self, settings: Settings, publisher: Publisher | None = None) -> None:
        self.settings = settings
        self.symbols = set(settings.defillama_symbols)
        self.log = get_logger(component="defillama")
        self.health = Health()
        self.publisher = publisher or Publisher(telemetry.SERVICE, settings, watch=self.health.broker)
        self.health.publishing = self.publisher.check
        self.llama: DefiLlamaClient | None = None
        self.cryptocompare: CryptoCompareClient | None = None

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        timeout = httpx.Timeout(s.defillama_http_timeout_s, connect=10.0)
        async with httpx.AsyncClient(timeout=timeout, headers={"User-Agent": USER_AGENT},
                                     follow_redirects=True) as http:
            self.llama = DefiLlamaClient(http, s.defillama_yields_url, s.defillama_stablecoins_url)
            loops: dict[str, tuple[float, Callable[[], Awaitable[None]]]] = {
                POOLS: (s.defillama_pools_interval_s, self.poll_pools),
                STABLECOINS: (s.defillama_stablecoins_interval_s, self.poll_stablecoins),
            }
            if s.cryptocompare_api_key is not None and s.cryptocompare_api_key.get_secret_value():
                self.cryptocompare = CryptoCompareClient(http, s.cryptocompare_url, s.cryptocompare_api_key)
                loops[CRYPTOCOMPARE] = (s.cryptocompare_interval_s, self.poll_cryptocompare)
            else:
                self.health.disabled[CRYPTOCOMPARE] = "SYI_CRYPTOCOMPARE_API_KEY is not set"
                self.log.info("source_disabled", source=CRYPTOCOMPARE, reason="SYI_CRYPTOCOMPARE_API_KEY is not set")
            for source, (interval, _) in loops.items():
                self.health.watch(source, interval)
            tasks = [asyncio.create_task(self.health.tasks.run(f"poll_{source}",
                                                               partial(self.poll_forever, source, interval, poll)))
                     for source, (interval, poll) in loops.items()]
            tasks.append(asyncio.create_task(self.health.tasks.run(
                "deliver", partial(self.publisher.pumping, 0.1, partial(self.health.tasks.progressed, "deliver")))))
            self.health.broker.start_probe(s.kafka_config())  # /healthz knows when Kafka is gone
            try:
                await stop.wait()
            finally:
                self.health.broker.stop_probe()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                left = await asyncio.to_thread(self.publisher.flush, 10.0)
                self.log.info("stopped", unflushed=left)

    async def poll_forever(self, source: str, interval_s: float, poll: Callable[[], Awaitable[None]]) -> None:
        failures = 0
        while True:
            await self.publisher.room()  # paused while values wait for Kafka
            started = time.monotonic()
            try:
                await poll()
                self.health.success(source)
                failures = 0
                delay = interval_s - (time.monotonic() - started)
            except SourceError as exc:
                self._source_error(source, exc.kind, str(exc))
                delay = max(backoff_s(failures, self.settings.retry_initial_s, interval_s), exc.retry_after or 0.0)
                failures += 1
                self.log.info("retrying", source=source, delay_s=round(delay, 3))
            self.health.tasks.progressed(f"poll_{source}")  # a round done, even a failed poll
            await asyncio.sleep(max(0.0, delay))

    async def poll_pools(self) -> None:
        assert self.llama is not None
        received = now_text()
        pools, seen = await self.llama.pools(keeps_pool(self.symbols))
        published = sum(self._publish_built(DL_APY, POOLS, partial(pool_yield, pool, received)) for pool in pools)
        self.log.info("polled", source=POOLS, pools_seen=seen, published=published)

    async def poll_stablecoins(self) -> None:
        assert self.llama is not None
        assets = await self.llama.stablecoins()
        received = now_text()
        picked = pick_assets(assets, self.symbols)
        missing = sorted(self.symbols - picked.keys())
        if missing:
            self.log.warning("symbols_missing", source=STABLECOINS, symbols=missing)
        published = 0
        for symbol, asset in picked.items():
            published += self._publish_built(EX_MKTCAP, STABLECOINS, partial(market_cap, symbol, asset, received))
            price = usd_price(asset)
            if price is not None:  # null prices are a documented quirk: no tick, no error
                published += self._publish_built(
                    CC_PRICES, STABLECOINS, partial(usd_tick, symbol, "defillama", price, received, received))
        self.log.info("polled", source=STABLECOINS, assets=len(assets), published=published)

    async def poll_cryptocompare(self) -> None:
        assert self.cryptocompare is not None
        quotes = await self.cryptocompare.usd_quotes(sorted(self.symbols))
        received = now_text()
        published = sum(
            self._publish_built(CC_PRICES, CRYPTOCOMPARE, partial(cryptocompare_tick, symbol, quote, received))
            for symbol, quote in quotes.items() if symbol in self.symbols
        )
        self.log.info("polled", source=CRYPTOCOMPARE, published=published)

    def _publish_built(self, topic: str, source: str, build: Callable[[], BaseModel]) -> int:
        """Build one value from source data and publish it; bad data is logged, counted, skipped."""
        try:
            value = build()
        except (KeyError, TypeError, ValueError) as exc:  # ValidationError is a ValueError
            reason = validation_reason(exc) if isinstance(exc, ValidationError) else f"{type(exc).__name__}: {exc}"
            self._source_error(source, "invalid", reason)
            return 0
        self.publisher.publish(topic, value)  # a full producer queue conflates, never drops
        return 1

    def _source_error(self, source: str, kind: str, detail: str) -> None:
        self.health.error(source, kind)
        self.log.warning("source_error", source=source, kind=kind, detail=detail)
