"""The bucket clock: when may minute bucket t close? Pure (the caller passes the wall clock in
seconds), no Kafka and no Bytewax, so it is tested with plain numbers (docs/streaming.md,
"The live clock" and "Progress markers").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from syi_shared.methodology.engine import BUCKET_MS, bucket_end_of
from syi_shared.models import ProgressMarker
from syi_shared.timefmt import millis

PartitionId = tuple[str, int]

@dataclass
class PartitionProgress:
    next_offset: int | None = None  # first offset not delivered yet
    max_event_ms: int | None = None  # newest event time delivered (clocked topics)


@dataclass
class PendingMarker:
    upto_ms: int
    offsets: dict[PartitionId, int]
    final: bool
    run_start_ms: int | None


@dataclass
class ClockState:
    """The clock's memory, snapshotted with the engine's."""

    partitions: dict[PartitionId, PartitionProgress] = field(default_factory=dict)
    first_bucket_ms: int | None = None  # smallest bucket seen before the first close
    last_closed_ms: int | None = None
    max_bucket_ms: int | None = None  # bucket of the newest input seen
    markers: list[PendingMarker] = field(default_factory=list)  # received, not yet reached
    marker_upto_ms: int | None = None  # everything with event_time < this has been read
    replay_until_ms: int | None = None  # wall time until which a replay's markers keep idleness off

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (the checkpoint's `clock`); partitions as "topic/partition"."""
        return {
            "partitions": {_place_text(place): asdict(progress) for place, progress in sorted(self.partitions.items())},
            "first_bucket_ms": self.first_bucket_ms,
            "last_closed_ms": self.last_closed_ms,
            "max_bucket_ms": self.max_bucket_ms,
            "markers": [
                {**asdict(marker), "offsets": {_place_text(place): offset for place, offset in marker.offsets.items()}}
                for marker in self.markers
            ],
            "marker_upto_ms": self.marker_upto_ms,
            "replay_until_ms": self.replay_until_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClockState:
        return cls(
            partitions={_place(text): PartitionProgress(**progress) for text, progress in data["partitions"].items()},
            first_bucket_ms=data["first_bucket_ms"],
            last_closed_ms=data["last_closed_ms"],
            max_bucket_ms=data["max_bucket_ms"],
            markers=[
                PendingMarker(**{**marker, "offsets": {_place(text): offset for text, offset in marker["offsets"].items()}})
                for marker in data["markers"]
            ],
            marker_upto_ms=data["marker_upto_ms"],
            replay_until_ms=data["replay_until_ms"],
        )


def _place_text(place: PartitionId) -> str:
    return f"{place[0]}/{place[1]}"


def _place(text: str) -> PartitionId:
    topic, partition = text.rsplit("/", 1)
    return topic, int(partition)


@dataclass(frozen=True)
class ClockConfig:
    input_topics: tuple[str, ...]
    clocked_topics: tuple[str, ...]  # topics whose partitions' event time (or idleness) gates buckets
    partitions: tuple[PartitionId, ...]  # every partition of the input topics
    lateness_ms: int
    idle_timeout_s: float
    progress_timeout_ms: int
    skew_ms: int = 5_000  # live: how far ahead of the wall clock a partition's progress may count
    reconnect_grace_s: float = 15.0  # after the broker is back, idleness waits this long for the backlog
    quiet_note_after_ms: dict[str, int] = field(default_factory=dict)  # topic -> silence worth a close note


class BucketClock:
    """Decides when a bucket may close (pure: the caller passes the wall clock in seconds).

    Live (no replay's progress markers in charge), the wall clock bounds the event time
    (docs/streaming.md, "The live clock"): no bucket closes before the wall clock passes its
    end plus the lateness, no partition's progress counts beyond the wall clock plus `skew_ms`,
    and idleness releases nothing while the broker is unreachable nor for `reconnect_grace_s`
    after it is back (the backlog produced meanwhile is on its way). Replays at speed are
    governed by markers and event time alone.
    """

    def __init__(self, config: ClockConfig, state: ClockState | None, now: float) -> None:
        self.config = config
        self.state = state or ClockState()
        for place in config.partitions:
            self.state.partitions.setdefault(place, PartitionProgress())
        # Idleness is system time, never snapshotted: after a restart every partition gets a
        # fresh idle_timeout (partitions that never deliver count as idle after it).
        self.last_seen: dict[PartitionId, float] = {place: now for place in config.partitions}
        # Idle timers of partitions that have not delivered yet start with the first message
        # (not at start-up), so a flow that waited for its first input does not begin with
        # every partition idle.
        self.active_since: float | None = None
        self.disconnected_since: float | None = None  # the broker is unreachable since then
        self.quiet_until = 0.0  # no release by idleness before this (reconnect grace)
        self._clocked = [place for place in config.partitions if place[0] in config.clocked_topics]

    # --- what arrives

    def started(self, place: PartitionId, offset: int, now: float) -> None:
        progress = self.state.partitions.setdefault(place, PartitionProgress())
        progress.next_offset = max(progress.next_offset or 0, offset)
        self.last_seen[place] = now
        self._apply_markers()

    def arrived(self, place: PartitionId, offset: int, bucket_ms: int | None, event_ms: int | None, now: float) -> bool:
        """Record one message; True when it is late (its bucket has already closed)."""
        progress = self.state.partitions.setdefault(place, PartitionProgress())
        progress.next_offset = max(progress.next_offset or 0, offset + 1)
        self.last_seen[place] = now
        if self.active_since is None:
            self.active_since = now
        self._apply_markers()
        if bucket_ms is None:
            return False
        state = self.state
        if state.last_closed_ms is not None and bucket_ms <= state.last_closed_ms:
            return True
        if not self.replaying(now):
            # A message stamped in the future is kept (its bucket will come), but it moves the
            # clock only as far as the wall clock allows: one bad stamp cannot drag the index on.
            horizon = self._horizon_ms(now)
            event_ms = min(event_ms, horizon) if event_ms is not None else None
            bucket_ms = min(bucket_ms, bucket_end_of(horizon))
        if event_ms is not None and place[0] in self.config.clocked_topics:
            progress.max_event_ms = max(progress.max_event_ms or event_ms, event_ms)
        state.max_bucket_ms = max(state.max_bucket_ms or bucket_ms, bucket_ms)
        if state.last_closed_ms is None:
            state.first_bucket_ms = min(state.first_bucket_ms or bucket_ms, bucket_ms)
        return False

    def read(self, place: PartitionId, next_offset: int) -> None:
        """A partition that is not an input (the progress topic): only where reading got to."""
        progress = self.state.partitions.setdefault(place, PartitionProgress())
        progress.next_offset = max(progress.next_offset or 0, next_offset)

    def connection(self, reachable: bool, now: float) -> None:
        """The broker's reachability as the service's Kafka clients see it."""
        if not reachable:
            if self.disconnected_since is None:
                self.disconnected_since = now
        elif self.disconnected_since is not None:
            self.disconnected_since = None
            self.quiet_until = now + self.config.reconnect_grace_s
            for place in self.last_seen:  # silence while we could not read was not the sources'
                self.last_seen[place] = max(self.last_seen[place], now)

    def marker(self, marker: ProgressMarker, now: float) -> None:
        offsets = {
            (topic, int(partition)): offset
            for topic, partitions in marker.offsets.items()
            if topic in self.config.input_topics
            for partition, offset in partitions.items()
        }
        self.state.markers.append(PendingMarker(
            millis(marker.upto), offsets, marker.final, millis(marker.run_start) if marker.run_start else None
        ))
        if not marker.final:
            # A replay is running: from now on only event time and markers close buckets,
            # never idleness, so a slow or stalled read cannot make a sparse input late.
            until = millis(marker.announced_at) + self.config.progress_timeout_ms
            self.state.replay_until_ms = max(self.state.replay_until_ms or until, until)
        self._apply_markers()

    def _apply_markers(self) -> None:
        state = self.state
        while state.markers and self._reached(state.markers[0]):
            done = state.markers.pop(0)
            state.marker_upto_ms = max(state.marker_upto_ms or done.upto_ms, done.upto_ms)
            if done.run_start_ms is not None and state.last_closed_ms is None:
                start = bucket_end_of(done.run_start_ms)
                state.first_bucket_ms = min(state.first_bucket_ms or start, start)
            if done.final:
                state.replay_until_ms = None

    def _reached(self, marker: PendingMarker) -> bool:
        for place, offset in marker.offsets.items():
            if offset <= 0:
                continue
            progress = self.state.partitions.get(place)
            if progress is None or progress.next_offset is None or progress.next_offset < offset:
                return False
        return True

    # --- what may close

    def next_bucket(self) -> int | None:
        state = self.state
        if state.last_closed_ms is not None:
            return state.last_closed_ms + BUCKET_MS
        return state.first_bucket_ms

    def replaying(self, now: float) -> bool:
        until = self.state.replay_until_ms
        return until is not None and now * 1000 < until

    def _horizon_ms(self, now: float) -> int:
        return int(now * 1000) + self.config.skew_ms

    def _max_bucket(self, now: float) -> int | None:
        """Bucket of the newest input, live never beyond the wall clock's (a restored snapshot
        may still hold a future stamp)."""
        newest = self.state.max_bucket_ms
        if newest is None or self.replaying(now):
            return newest
        return min(newest, bucket_end_of(self._horizon_ms(now)))

    def _newest(self, place: PartitionId, now: float) -> int | None:
        newest = self.state.partitions[place].max_event_ms
        if newest is None or self.replaying(now):
            return newest
        return min(newest, self._horizon_ms(now))

    def idle_allowed(self, now: float, eof: bool = False) -> bool:
        """Whether silence may release buckets now: not during a replay, not while the broker
        is unreachable, not during the grace after it came back."""
        if eof:
            return True
        return not self.replaying(now) and self.disconnected_since is None and now >= self.quiet_until

    def may_close(self, t: int, now: float, eof: bool = False) -> bool:
        state = self.state
        if state.marker_upto_ms is not None and t <= state.marker_upto_ms:
            return True  # a progress marker: every input before t has been read
        live = not self.replaying(now)
        if live and not eof and now * 1000 < t + self.config.lateness_ms:
            return False  # the live clock: never before the bucket's end plus the lateness
        newest_bucket = self._max_bucket(now)
        if newest_bucket is None or t > newest_bucket:
            return False  # never past the newest input (all sources idle = nothing new to say)
        idle_allowed = self.idle_allowed(now, eof)
        for place in self._clocked:
            newest = self._newest(place, now)
            if newest is not None and newest - self.config.lateness_ms >= t:
                continue
            if idle_allowed and (eof or now >= self._idle_at(place) or now >= self._passes_at(place, t, now)):
                continue
            return False
        return True

    def _passes_at(self, place: PartitionId, t: int, now: float) -> float:
        """When a quiet partition's watermark, advancing with the wall clock since its last
        message (Bytewax's EventClock rule), passes bucket t plus the lateness. Live sources
        stamp event time on receipt, so a quiet feed releases a minute about `lateness` after
        its end instead of holding it for the whole idle timeout."""
        newest = self._newest(place, now)
        if newest is None:
            return float("inf")
        return self.last_seen[place] + (t + self.config.lateness_ms - newest) / 1000

    def closed(self, t: int) -> None:
        self.state.last_closed_ms = t

    def _idle_at(self, place: PartitionId) -> float:
        return max(self.last_seen[place], self.active_since or 0.0) + self.config.idle_timeout_s

    def wake_at(self, now: float) -> float | None:
        """When the wall clock (idleness, the live clock, the end of a replay or of the
        reconnect grace) could let the next bucket close."""
        t = self.next_bucket()
        if t is None or self.state.max_bucket_ms is None or t > self.state.max_bucket_ms:
            return None
        times = []
        newest_bucket = self._max_bucket(now)
        if newest_bucket is not None and t > newest_bucket:  # capped by the wall clock: wait for it
            times.append((t - BUCKET_MS - self.config.skew_ms) / 1000)
        if not self.replaying(now):
            times.append((t + self.config.lateness_ms) / 1000)
        if self.disconnected_since is None:
            times.append(self.quiet_until)
            times += [min(self._idle_at(place), self._passes_at(place, t, now)) for place in self._clocked]
        if self.replaying(now):
            times.append(self.state.replay_until_ms / 1000)  # type: ignore[operator]
        later = [at for at in times if at > now]
        return min(later) if later else None

    def input_offsets(self) -> dict[str, dict[str, int]]:
        """Per input partition, the offset up to which (exclusive) it has been read."""
        offsets: dict[str, dict[str, int]] = {}
        for (topic, partition), progress in sorted(self.state.partitions.items()):
            if progress.next_offset is not None and topic in self.config.input_topics:
                offsets.setdefault(topic, {})[str(partition)] = progress.next_offset
        return offsets

    def positions(self) -> dict[str, dict[str, int]]:
        """Like `input_offsets`, for every partition read (the progress topic too): where a
        restart resumes."""
        offsets: dict[str, dict[str, int]] = {}
        for (topic, partition), progress in sorted(self.state.partitions.items()):
            if progress.next_offset is not None:
                offsets.setdefault(topic, {})[str(partition)] = progress.next_offset
        return offsets

    def quiet_partitions(self, now: float) -> list[PartitionId]:
        """Clocked partitions that have delivered before but have been silent for longer than
        their topic's cadence (the normal quiet of hourly or daily inputs is not news)."""
        quiet = []
        for place in self._clocked:
            limit = self.config.quiet_note_after_ms.get(place[0])
            if limit is None or self.state.partitions[place].max_event_ms is None:
                continue
            if (now - self.last_seen[place]) * 1000 > limit:
                quiet.append(place)
        return quiet
