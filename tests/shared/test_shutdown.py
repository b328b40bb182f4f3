"""stop_on_signal: the asyncio `stop` event the ingesters' serve() hands their worker."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from syi_shared.shutdown import stop_on_signal


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_is_set_by_a_signal(signum):
    async def main() -> tuple[bool, bool]:
        stop = stop_on_signal()
        await asyncio.sleep(0)
        before = stop.is_set()
        os.kill(os.getpid(), signum)
        await asyncio.wait_for(stop.wait(), timeout=5)
        return before, stop.is_set()

    assert asyncio.run(main()) == (False, True)  # a fresh loop: its handlers go when it closes
