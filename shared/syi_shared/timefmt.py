"""The one time format of every topic: ISO-8601 UTC, millisecond precision, `Z` suffix."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

# Accepts what docs/topics.md writes ("2026-11-27T10:00:01.234Z") and whole seconds; nothing
# else (ASCII digits only; `datetime.fromisoformat` then checks the calendar).
UTC_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?Z$"
_UTC_Z = re.compile(UTC_PATTERN)


def parse_utc(text: str) -> datetime:
    """Parse a `...Z` timestamp into an aware UTC datetime; anything else is a ValueError."""
    if type(text) is str:
        # The usual layout (24 characters) told by its separators, a third of the pattern's
        # cost: `fromisoformat` then reads every other place as an ASCII digit and checks the
        # ranges, so it accepts exactly what the pattern does (tests/shared/test_timefmt.py).
        if len(text) == 24 and text[4:20:3] == "--T::." and text[23] == "Z":
            try:
                return datetime.fromisoformat(text)  # Python 3.11 reads the 'Z' as UTC
            except ValueError:
                pass  # the pattern below tells which error it is
        if _UTC_Z.fullmatch(text) is not None:  # fullmatch: no trailing newline
            return datetime.fromisoformat(text)
    raise ValueError(f"expected an ISO-8601 UTC time ending in 'Z', got {text!r}")


def format_utc(moment: datetime) -> str:
    """Format an aware datetime as `YYYY-MM-DDTHH:MM:SS.mmmZ` (milliseconds, truncated)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: every time in this system is UTC and aware")
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def to_millis(moment: datetime) -> int:
    """Milliseconds since the epoch (sub-millisecond parts truncated, like format_utc): the
    integer clock the methodology compares."""
    return (moment - _EPOCH) // _MILLISECOND


def from_millis(millis: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=millis)


# A message's times are read many times on its way (its model's checks, the bucket it falls in,
# the clock, the engine's ordering): each string is parsed once, then answered from here.
MILLIS_CACHE_SIZE = 1 << 14


@lru_cache(maxsize=MILLIS_CACHE_SIZE)
def millis(text: str) -> int:
    """A `...Z` timestamp as epoch milliseconds (`to_millis(parse_utc(text))`), parsed once per
    distinct string (a bounded cache); a malformed one is a ValueError every time."""
    return (parse_utc(text) - _EPOCH) // _MILLISECOND  # to_millis, one call fewer per message


@lru_cache(maxsize=1 << 12)  # a bucket's end is written on each of its records
def time_text(ms: int) -> str:
    """Epoch milliseconds as a `...Z` timestamp (`format_utc(from_millis(ms))`)."""
    return format_utc(from_millis(ms))


def utc_now() -> datetime:
    return datetime.now(UTC)


def now_text() -> str:
    return format_utc(utc_now())
