"""The index stream's recent records by topic position, so a reconnecting client resumes without a gap.

`syi.calculated` has one partition, so a record's offset is its position (`seq`): it only increases,
but is not consecutive (transaction markers take offsets too), which is why gaps are judged by
`prev_cid` and a resume is asked for *after* a position. The gateway reads the topic from
`window` seconds back when it starts and keeps what it reads for that long: a resume is served
when every record after the asked position is still held (`floor`), and refused otherwise, so a
client is never told "that is all" while records are missing.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from syi_shared.timefmt import millis, time_text


class ResumeRefused(ValueError):
    """A resume that cannot be served gap-free (too far back, or not known yet)."""


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    bucket_end_ms: int
    revision: int
    raw: bytes  # the record exactly as published
    produced_ms: int  # the Kafka timestamp: what the window is judged by


class History:
    def __init__(self, window_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.window_ms = int(window_seconds * 1000)
        self.clock = clock
        self.entries: deque[Entry] = deque()
        self._seqs: deque[int] = deque()  # the entries' seqs, for bisect
        # every record at or after this position is held; None until the follower has started
        self.floor: int | None = None

    def started(self, offset: int) -> None:
        """The follower (re)started reading at `offset`; a restart after a failure continues where it was."""
        if self.floor is None:
            self.floor = offset

    def append(self, seq: int, raw: bytes, produced_ms: int) -> Entry:
        record = orjson.loads(raw)
        entry = Entry(seq, millis(record["bucket_end"]), int(record.get("revision") or 0), raw, produced_ms)
        self.entries.append(entry)
        self._seqs.append(seq)
        if self.floor is None:
            self.floor = seq
        self._trim()
        return entry

    def newest_bucket_ms(self) -> int | None:
        return max((e.bucket_end_ms for e in self.entries if e.revision == 0), default=None)

    def after(self, seq: int) -> list[Entry]:
        """The held records after position `seq`, in order; refused when some may be missing."""
        if self.floor is None:
            raise ResumeRefused("the gateway is still reading the topic; reconnect in a few seconds")
        if seq + 1 < self.floor:
            raise ResumeRefused(
                f"resume reaches further back than the {self.window_ms // 3_600_000} h the gateway keeps "
                f"(oldest position held: {self.floor}); read older records from the REST history"
            )
        return list(self.entries)[bisect.bisect_right(self._seqs, seq):]

    def position_of(self, bucket_end_ms: int) -> int:
        """The position of the bucket's latest record (its newest revision); for a bucket never
        published, of the newest original record before it."""
        if bucket_end_ms < int(self.clock() * 1000) - self.window_ms:
            raise ResumeRefused(
                f"{time_text(bucket_end_ms)} is older than the oldest record the gateway keeps (at most the last "
                f"{self.window_ms // 3_600_000} h); read older records from the REST history"
            )
        latest = [e.seq for e in self.entries if e.bucket_end_ms == bucket_end_ms]
        if latest:
            return max(latest)
        earlier = [e.seq for e in self.entries if e.revision == 0 and e.bucket_end_ms < bucket_end_ms]
        if earlier:
            return max(earlier)
        if self.floor is None:
            raise ResumeRefused("the gateway is still reading the topic; reconnect in a few seconds")
        oldest = min((e.bucket_end_ms for e in self.entries), default=None)
        if oldest is not None and bucket_end_ms < oldest:
            raise ResumeRefused(
                f"{time_text(bucket_end_ms)} is older than the oldest record the gateway keeps (at most the last "
                f"{self.window_ms // 3_600_000} h); read older records from the REST history"
            )
        return self.floor - 1  # nothing held is at or before it: everything held comes after

    def _trim(self) -> None:
        horizon = int(self.clock() * 1000) - self.window_ms
        while self.entries and self.entries[0].produced_ms < horizon:
            gone = self.entries.popleft()
            self._seqs.popleft()
            self.floor = gone.seq + 1
