"""How long a source client waits before trying again: exponential backoff with jitter,
and the server's own `Retry-After` when it sent one."""

from __future__ import annotations

import random


def backoff_s(attempt: int, initial: float, cap: float) -> float:
    """Exponential backoff with 'equal jitter': half fixed, half random, so clients spread out."""
    delay = min(cap, initial * 2**attempt)
    return delay / 2 + random.uniform(0, delay / 2)


def retry_after_seconds(value: str | None) -> float | None:
    """A `Retry-After` header given in seconds; None when it is missing or not a number."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None
