"""Binance combined WebSocket stream: one connection's life, frame by frame.

`wss://.../stream?streams=usdcusdt@bookTicker/usdcusdt@depth20@100ms/...` wraps each
payload as {"stream": ..., "data": ...}. Binance closes connections after 24 h (and may
announce it with a serverShutdown event); a connection that goes silent is dead even if
TCP has not noticed. The caller owns reconnecting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from websockets.asyncio.client import connect

from ingest_binance.ticks import Market
from syi_shared.timefmt import now_text

RENEW = "renew"
SERVER_SHUTDOWN = "server_shutdown"


class StreamIdle(Exception):
    """No frame for longer than the idle timeout."""


def stream_names(markets: Iterable[Market]) -> list[str]:
    names = []
    for market in markets:
        names += [f"{market.stream_name}@bookTicker", f"{market.stream_name}@depth20@100ms"]
    return names


def stream_url(base_url: str, markets: Iterable[Market]) -> str:
    return f"{base_url.rstrip('/')}/stream?streams={'/'.join(stream_names(markets))}"


async def stream_session(
    url: str,
    on_frame: Callable[[str | bytes, str], bool],
    on_open: Callable[[], None],
    idle_timeout_s: float,
    max_age_s: float,
) -> str:
    """Read one connection until it must be renewed (RENEW) or the server announced its
    shutdown (on_frame returned True: SERVER_SHUTDOWN). Failures raise (ConnectionClosed,
    OSError, InvalidStatus, TimeoutError, StreamIdle)."""
    # websockets answers the server's pings itself; our own pings catch a half-open socket
    async with connect(url, open_timeout=10, close_timeout=2, ping_interval=20, ping_timeout=20,
                       max_size=2**22) as websocket:
        on_open()
        opened = time.monotonic()
        while True:
            age_left = max_age_s - (time.monotonic() - opened)
            if age_left <= 0:
                return RENEW
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation (shutdown)
                async with asyncio.timeout(min(idle_timeout_s, age_left)):
                    frame = await websocket.recv()
            except TimeoutError:
                if time.monotonic() - opened >= max_age_s:
                    return RENEW
                raise StreamIdle(f"no frame for {idle_timeout_s:g} s") from None
            if on_frame(frame, now_text()):
                return SERVER_SHUTDOWN
