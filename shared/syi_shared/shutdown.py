"""Graceful SIGTERM/SIGINT: one event every loop waits on."""

from __future__ import annotations

import asyncio
import signal
import threading


class Shutdown:
    """Set on SIGTERM or SIGINT; usable from threads (`is_set`) and asyncio (`wait`)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._async_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> Shutdown:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)
        return self

    def install_async(self, loop: asyncio.AbstractEventLoop | None = None) -> Shutdown:
        self._loop = loop or asyncio.get_running_loop()
        self._async_event = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, self.trigger)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.trigger()

    def trigger(self) -> None:
        self._event.set()
        if self._async_event is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._async_event.set)

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        if self._async_event is None:
            raise RuntimeError("call install_async() inside the running loop first")
        await self._async_event.wait()


def stop_on_signal() -> asyncio.Event:
    """Inside the running loop: an event that is set on the first SIGTERM or SIGINT (an asyncio worker's `stop`)."""
    stop = asyncio.Event()
    shutdown = Shutdown().install_async()
    asyncio.create_task(shutdown.wait()).add_done_callback(lambda _: stop.set())
    return stop
