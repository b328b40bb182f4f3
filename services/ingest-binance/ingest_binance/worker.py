"""ingest-binance: check the pairs, stream them, fall back to REST while the stream is down.

Four tasks share one throttle and one publisher:
* the stream loop (reconnects with jittered exponential backoff; immediately on a 24 h
  renewal or a serverShutdown event),
* the REST fallback (polls bookTicker + depth while no frame arrived for a few seconds),
* the throttle's flusher (publishes values that waited for their slot),
* the publisher's pump (delivery reports; values waiting for room in the producer).
Each runs under the health supervisor: an unexpected exception is logged, counted and
retried, and /healthz says degraded until that loop makes progress again.

While the producer has no room (Kafka slow or away) the publisher keeps the newest value per
topic and pair and the REST fallback waits; the stream is still read, because Binance closes a
connection that is not read, and its values conflate in the publisher's backlog.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import httpx
import orjson
from pydantic import ValidationError
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from ingest_binance import telemetry
from ingest_binance.binance_client import INVALID_SYMBOL, USER_AGENT, BinanceError, BinanceRest, retry_after_s
from ingest_binance.binance_stream import RENEW, StreamIdle, stream_session, stream_url
from ingest_binance.settings import Settings
from ingest_binance.telemetry import REST, WS, Health
from ingest_binance.throttle import Throttle
from ingest_binance.ticks import Market, order_book, price_tick
from syi_shared.backoff import backoff_s
from syi_shared.logs import get_logger
from syi_shared.models import validation_reason
from syi_shared.publisher import Publisher
from syi_shared.timefmt import now_text
from syi_shared.topics import CC_ORDERBOOK, CC_PRICES

_SYMBOL = re.compile(r"^[A-Z0-9]{2,15}$")
FLUSH_EVERY_S = 0.2


class ConfigError(Exception):
    """Bad configuration found at start-up: the service stops and says which setting."""


class BinanceIngester:
    def __init__(self, settings: Settings, publisher: Publisher | None = None) -> None:
        self.settings = settings
        self.log = get_logger(component="binance")
        self.health = Health(settings.binance_stale_after_s)
        self.publisher = publisher or Publisher(telemetry.SERVICE, settings, watch=self.health.broker)
        self.health.publishing = self.publisher.check
        self.throttle = Throttle(settings.binance_publish_interval_s)
        self.markets: list[Market] = []
        self._by_stream: dict[str, Market] = {}
        self._by_pair: dict[str, Market] = {}
        self._last_frame = time.monotonic()
        self._frames_this_connection = 0
        self.rest: BinanceRest | None = None

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        self.health.broker.start_probe(self.settings.kafka_config())  # /healthz knows when Kafka is gone
        try:
            await self._run(stop)
        finally:
            self.health.broker.stop_probe()

    async def _run(self, stop: asyncio.Event) -> None:
        timeout = httpx.Timeout(self.settings.binance_http_timeout_s)
        async with httpx.AsyncClient(base_url=self.settings.binance_rest_url, timeout=timeout,
                                     headers={"User-Agent": USER_AGENT}) as http:
            self.rest = BinanceRest(http)
            resolving = asyncio.create_task(self.resolve_markets())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({resolving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not resolving.done():
                resolving.cancel()
                await asyncio.gather(resolving, return_exceptions=True)
                return
            stopping.cancel()
            self.markets = resolving.result()  # raises ConfigError
            self._by_stream = {m.stream_name: m for m in self.markets}
            self._by_pair = {m.pair: m for m in self.markets}
            self._last_frame = time.monotonic()
            tasks = [asyncio.create_task(self.health.tasks.run(name, loop, fatal=(ConfigError,)))
                     for name, loop in self.loops().items()]
            stopping = asyncio.create_task(stop.wait())
            try:
                # the loops run until stop (their failures are retried); one ending early is a ConfigError
                done, _ = await asyncio.wait({stopping, *tasks}, return_when=asyncio.FIRST_COMPLETED)
                for task in done - {stopping}:
                    task.result()
            finally:
                for task in (stopping, *tasks):
                    task.cancel()  # closes the WebSocket (close handshake) inside stream_session
                await asyncio.gather(stopping, *tasks, return_exceptions=True)
                left = await asyncio.to_thread(self.publisher.flush, 10.0)
                self.log.info("stopped", unflushed=left)

    def loops(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """The supervised loops, by task name (the `task` label of syi_task_failures_total)."""
        return {"stream": self.stream_forever, "rest_fallback": self.rest_fallback, "flush": self.flush_pending,
                "deliver": self.deliver}

    async def resolve_markets(self) -> list[Market]:
        """Check the configured pairs against exchangeInfo (retrying until Binance answers)."""
        assert self.rest is not None
        pairs = self.settings.binance_pairs
        attempt = 0
        while True:
            try:
                found = await self._exchange_info(pairs)
                break
            except BinanceError as exc:
                self._source_error(REST, exc.kind, str(exc), call="exchangeInfo")
                if exc.fatal:
                    raise ConfigError(f"Binance refuses this client ({exc}); set SYI_BINANCE_REST_URL and "
                                      "SYI_BINANCE_WS_URL to a reachable host") from None
                await asyncio.sleep(backoff_s(attempt, 1.0, self.settings.binance_reconnect_max_s))
                attempt += 1
        markets = []
        for pair in pairs:
            info = found.get(pair)
            reason = None
            if info is None:
                reason = "unknown to Binance (-1121 Invalid symbol)"
            elif info.get("status") != "TRADING":
                reason = f"status {info.get('status')}, not TRADING"
            elif not (_SYMBOL.match(str(info.get("baseAsset"))) and _SYMBOL.match(str(info.get("quoteAsset")))):
                reason = f"assets {info.get('baseAsset')}/{info.get('quoteAsset')} are not plain tickers"
            if reason:
                self.health.skipped_pairs[pair] = reason
                self.log.warning("pair_skipped", pair=pair, reason=reason)
                continue
            markets.append(Market(pair, info["baseAsset"], info["quoteAsset"]))
        if not markets:
            raise ConfigError(f"none of SYI_BINANCE_PAIRS={','.join(pairs)} trades on Binance")
        self.health.pairs = [m.pair for m in markets]
        self.health.success(REST)
        self.log.info("pairs_checked", pairs=self.health.pairs, skipped=sorted(self.health.skipped_pairs))
        return markets

    async def _exchange_info(self, pairs: list[str]) -> dict[str, dict[str, Any]]:
        assert self.rest is not None
        try:
            return await self.rest.exchange_info(pairs)
        except BinanceError as exc:
            if exc.code != INVALID_SYMBOL:
                raise
        # one unknown symbol fails the batch: ask pair by pair to learn which
        found: dict[str, dict[str, Any]] = {}
        for pair in pairs:
            try:
                found.update(await self.rest.exchange_info([pair]))
            except BinanceError as exc:
                if exc.code != INVALID_SYMBOL:
                    raise
        return found

    # ------------------------------------------------------------------ stream

    async def stream_forever(self) -> None:
        assert self.rest is not None
        url = stream_url(self.settings.binance_ws_url, self.markets)
        attempt = 0
        while True:
            await self.rest.wait_turn()  # a 429/418 covers the whole IP, the stream included
            self._frames_this_connection = 0
            reason = "error"
            try:
                reason = await stream_session(url, self._on_frame, self._on_open,
                                              self.settings.binance_stream_idle_timeout_s,
                                              self.settings.binance_ws_max_age_s)
                self.log.info("stream_renewing" if reason == RENEW else "stream_server_shutdown")
            except InvalidURI as exc:
                raise ConfigError(f"SYI_BINANCE_WS_URL is not a WebSocket URL: {exc}") from None
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (418, 429):
                    self.rest.back_off(retry_after_s(exc.response.headers, 60.0))
                self._source_error(WS, f"http_{status}" if status in (418, 429) else "handshake",
                                   f"handshake refused: HTTP {status}")
            except ConnectionClosed as exc:
                self._source_error(WS, "closed", f"connection closed: {exc}")
            except StreamIdle as exc:
                self._source_error(WS, "idle", str(exc))
            except (OSError, TimeoutError) as exc:
                self._source_error(WS, "transport", f"{type(exc).__name__}: {exc}")
            if self.health.mode == "stream":
                self.health.mode = "reconnecting"
            if self._frames_this_connection:
                attempt = 0  # the connection worked: start the backoff afresh
            delay = 0.0 if reason != "error" else backoff_s(attempt, self.settings.binance_reconnect_initial_s,
                                                            self.settings.binance_reconnect_max_s)
            attempt += reason == "error"
            self.health.reconnect(WS)
            self.health.tasks.progressed("stream")  # a handled outage is the loop working
            self.log.info("reconnecting", reason=reason, delay_s=round(delay, 3))
            await asyncio.sleep(delay)

    def _on_open(self) -> None:
        self.log.info("stream_connected", streams=2 * len(self.markets))

    def _on_frame(self, frame: str | bytes, received: str) -> bool:
        """Handle one frame; True when the server announced its shutdown."""
        try:
            message = orjson.loads(frame)
            stream, data = message.get("stream"), message.get("data")
        except (orjson.JSONDecodeError, AttributeError):
            self._source_error(WS, "malformed", "frame is not a JSON object", frame=_preview(frame))
            return False
        if stream == "!serverShutdown" or (isinstance(data, dict) and data.get("e") == "serverShutdown"):
            return True
        if not isinstance(stream, str):
            return False  # e.g. a reply to a SUBSCRIBE request
        name, _, channel = stream.partition("@")
        market = self._by_stream.get(name)
        if market is None:
            return False
        try:
            if channel == "bookTicker":
                topic, value = CC_PRICES, price_tick(market, data["b"], data["a"], received)
            elif channel.startswith("depth"):
                topic, value = CC_ORDERBOOK, order_book(market, data, self.settings.binance_depth_levels, received)
            else:
                return False
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:  # ValidationError is a ValueError
            self._source_error(WS, "invalid", _reason(exc), stream=stream)
            return False
        self._frames_this_connection += 1
        self._last_frame = time.monotonic()
        if self.health.mode != "stream":
            if self.health.mode == "rest_fallback":
                self.log.info("rest_fallback_stopped")
            self.health.mode = "stream"
        self.health.success(WS)
        self.health.tasks.progressed("stream")
        self._offer(topic, market, value)
        return False

    # ------------------------------------------------------------------ REST fallback

    async def rest_fallback(self) -> None:
        interval = self.settings.binance_rest_poll_interval_s
        while True:
            silent_s = time.monotonic() - self._last_frame
            if silent_s < self.settings.binance_fallback_after_s:
                self.health.tasks.progressed("rest_fallback")
                await asyncio.sleep(min(0.5, self.settings.binance_fallback_after_s - silent_s + 0.01))
                continue
            if self.health.mode != "rest_fallback":
                self.health.mode = "rest_fallback"
                self.log.warning("rest_fallback_started", silent_s=round(silent_s, 1))
            await self.publisher.room()  # no polling while values wait for Kafka
            await self.poll_rest_once()
            self.health.tasks.progressed("rest_fallback")
            await asyncio.sleep(interval)

    async def poll_rest_once(self) -> None:
        assert self.rest is not None
        try:
            rows = await self.rest.book_tickers([m.pair for m in self.markets])
            received = now_text()
            for row in rows:
                market = self._by_pair.get(row.get("symbol")) if isinstance(row, dict) else None
                if market is None:
                    continue
                try:
                    self._offer(CC_PRICES, market, price_tick(market, row["bidPrice"], row["askPrice"], received))
                except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
                    self._source_error(REST, "invalid", _reason(exc), pair=market.pair)
            for market in self.markets:
                book = await self.rest.depth(market.pair, self.settings.binance_depth_levels)
                try:
                    value = order_book(market, book, self.settings.binance_depth_levels, now_text())
                    self._offer(CC_ORDERBOOK, market, value)
                except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
                    self._source_error(REST, "invalid", _reason(exc), pair=market.pair)
            self.health.success(REST)
        except BinanceError as exc:
            self._source_error(REST, exc.kind, str(exc))

    # ------------------------------------------------------------------ publishing

    def _offer(self, topic: str, market: Market, value: Any) -> None:
        ready = self.throttle.offer((topic, market.pair), (topic, value))
        if ready is not None:
            self._publish(*ready)

    async def flush_pending(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            for topic, value in self.throttle.due():
                self._publish(topic, value)
            self.health.tasks.progressed("flush")

    async def deliver(self) -> None:
        await self.publisher.pumping(FLUSH_EVERY_S / 2, partial(self.health.tasks.progressed, "deliver"))

    def _publish(self, topic: str, value: Any) -> None:
        self.publisher.publish(topic, value)  # a full producer queue conflates, never drops

    def _source_error(self, source: str, kind: str, detail: str, **context: Any) -> None:
        self.health.error(source, kind)
        self.log.warning("source_error", source=source, kind=kind, detail=detail, **context)


def _reason(exc: Exception) -> str:
    return validation_reason(exc) if isinstance(exc, ValidationError) else f"{type(exc).__name__}: {exc}"


def _preview(frame: str | bytes) -> str:
    text = frame if isinstance(frame, str) else frame.decode(errors="replace")
    return text[:120]
