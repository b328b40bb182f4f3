"""Per-key publish throttle: at most one message per key per interval, newest wins.

depth20@100ms alone is 10 frames/s per pair; the minute-bucket index needs far less. The
first value after a quiet interval goes out at once; later ones wait for the key's next
slot (`due()`), so the latest state is never held back longer than one interval.

A slot opens `SLACK` of an interval early: a source that sends about once per interval (with
jitter: the replayed stream's frames come 0.86-1.16 s apart) then passes straight through instead
of each value waiting for a slot that drifts later and later (measured: values were 0.5 s old on
average when they reached Kafka, which the calculators' clock adds to every minute's close). The
rate stays at most one per 0.75 interval per key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any


SLACK = 0.25


class Throttle:
    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._gap = interval_s * (1 - SLACK)
        self.clock = clock
        self._sent: dict[Hashable, float] = {}
        self._pending: dict[Hashable, Any] = {}

    def offer(self, key: Hashable, value: Any) -> Any | None:
        """The value when it may go out now; otherwise it is kept (replacing an older one) and None."""
        now = self.clock()
        last = self._sent.get(key)
        if last is None or now - last >= self._gap:
            self._sent[key] = now
            self._pending.pop(key, None)
            return value
        self._pending[key] = value
        return None

    def due(self) -> list[Any]:
        """Kept values whose key's slot has opened."""
        now = self.clock()
        ready = []
        for key, value in list(self._pending.items()):
            if now - self._sent[key] >= self._gap:
                self._sent[key] = now
                del self._pending[key]
                ready.append(value)
        return ready
