"""The bucket clock of the streaming calculators (syi_shared.streaming.BucketClock): when a
minute bucket may close, what is late, and how progress markers and idleness interact."""

from __future__ import annotations

from syi_shared.models import ProgressMarker
from syi_shared.streaming.clock import BucketClock, ClockConfig
from syi_shared.timefmt import time_text

T0 = 1_795_000_020_000 // 60_000 * 60_000  # a whole minute
MIN = 60_000
# The wall clock (seconds) the tests start at: ten minutes after T0, so the live clock (no bucket
# before its end plus the lateness, no progress beyond the wall clock) never holds these buckets back.
N0 = T0 / 1000 + 600
PRICES = [("cc.prices", 0), ("cc.prices", 1)]
APY = [("dl.apy", 0)]


def clock(now: float = N0, idle: float = 10.0) -> BucketClock:
    config = ClockConfig(
        input_topics=("cc.prices", "dl.apy"),
        clocked_topics=("cc.prices", "dl.apy"),
        partitions=(*PRICES, *APY),
        lateness_ms=2_000,
        idle_timeout_s=idle,
        progress_timeout_ms=30_000,
    )
    return BucketClock(config, None, now)


def arrive(c: BucketClock, place: tuple[str, int], offset: int, event_ms: int, now: float = N0) -> bool:
    return c.arrived(place, offset, event_ms // MIN * MIN + MIN, event_ms, now)


def closable(c: BucketClock, now: float = N0) -> list[int]:
    """Close every bucket the clock allows, as the step does; returns their ends."""
    closed = []
    while (t := c.next_bucket()) is not None and c.may_close(t, now):
        c.closed(t)
        closed.append(t)
    return closed


def marker(upto_ms: int, offsets: dict[str, dict[str, int]], final: bool = False, announced_s: float = 0.0) -> ProgressMarker:
    return ProgressMarker(
        source="tape", upto=time_text(upto_ms), offsets=offsets, final=final,
        announced_at=time_text(int((N0 + announced_s) * 1000)),
    )


def test_bucket_closes_when_every_partition_passed_its_end_plus_lateness() -> None:
    c = clock()
    arrive(c, PRICES[0], 0, T0 + 5_000)
    arrive(c, PRICES[1], 0, T0 + 63_000)
    arrive(c, APY[0], 0, T0 + 62_500)
    assert closable(c) == []  # cc.prices-0 is still inside the first bucket
    arrive(c, PRICES[0], 1, T0 + 61_999)
    assert closable(c) == []  # 61.999 s < end (60 s) + lateness (2 s)
    arrive(c, PRICES[0], 2, T0 + 62_000)
    assert closable(c) == [T0 + MIN]


def test_message_for_a_closed_bucket_is_late_and_does_not_move_the_clock() -> None:
    c = clock()
    for place in (*PRICES, *APY):
        arrive(c, place, 0, T0 + 125_000)
    arrive(c, PRICES[0], 1, T0 + 1_000)  # before the first close: it just opens an earlier bucket
    assert closable(c) == [T0 + MIN, T0 + 2 * MIN]
    assert arrive(c, PRICES[1], 1, T0 + 119_999) is True  # bucket T0+2min is closed
    assert arrive(c, PRICES[1], 2, T0 + 120_000) is False


def test_silent_partitions_stop_holding_buckets_back_after_the_idle_timeout() -> None:
    c = clock(now=N0 + 0.0, idle=10.0)
    arrive(c, PRICES[0], 0, T0 + 1_000, now=N0 + 1.0)
    arrive(c, PRICES[0], 1, T0 + 3 * MIN, now=N0 + 1.0)  # dl.apy and cc.prices-1 never deliver anything
    arrive(c, PRICES[0], 2, T0 + 3 * MIN + 1, now=N0 + 5.0)
    assert closable(c, now=N0 + 9.0) == []
    assert c.wake_at(N0 + 9.0) == N0 + 11.0  # when the silent partitions turn idle (timers run from the first input)
    # cc.prices-0 passed the first two; its watermark, advancing with the wall clock since its
    # last message at 5.0 s, has passed the third's end plus lateness too (T0+3min+6 s at 11 s)
    assert closable(c, now=N0 + 11.0) == [T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN]
    # When every partition is idle, buckets close up to the one holding the newest input, not beyond.
    assert closable(c, now=N0 + 15.0) == [T0 + 4 * MIN]
    assert closable(c, now=N0 + 100.0) == []


def test_a_quiet_partitions_watermark_advances_with_the_wall_clock() -> None:
    c = clock(now=N0 + 0.0, idle=100.0)
    for place in (*PRICES, *APY):
        arrive(c, place, 0, T0 + 30_000, now=N0 + 0.0)
    arrive(c, PRICES[0], 1, T0 + 70_000, now=N0 + 40.0)
    # the others last spoke at 0 s about T0+30 s: by 31.999 s their clock reads T0+61.999 s
    assert closable(c, now=N0 + 31.999) == []
    assert c.wake_at(N0 + 31.999) == N0 + 32.0
    assert closable(c, now=N0 + 32.0) == [T0 + MIN]  # T0+62 s = the end (T0+60 s) plus the lateness


def test_a_running_replay_turns_idleness_off_until_its_final_marker_is_reached() -> None:
    c = clock(now=N0 + 0.0, idle=1.0)
    c.marker(marker(T0, {"cc.prices": {"0": 0, "1": 0}, "dl.apy": {"0": 0}}, announced_s=0.0), now=N0 + 0.0)
    arrive(c, PRICES[0], 0, T0 + 1_000, now=N0 + 0.5)
    arrive(c, PRICES[1], 0, T0 + 5 * MIN, now=N0 + 0.5)
    arrive(c, PRICES[0], 1, T0 + 5 * MIN, now=N0 + 0.5)
    assert closable(c, now=N0 + 20.0) == []  # dl.apy silent for 20 s, but a replay is running
    arrive(c, APY[0], 0, T0 + 30_000, now=N0 + 21.0)  # ... so its slow message still counts
    final = marker(T0 + 5 * MIN, {"cc.prices": {"0": 2, "1": 1}, "dl.apy": {"0": 1}}, final=True, announced_s=21.0)
    c.marker(final, now=N0 + 21.0)
    assert closable(c, now=N0 + 21.0) == [T0 + MIN * k for k in range(1, 6)]  # the marker closes the tail
    assert not c.replaying(N0 + 21.0)


def test_a_marker_counts_only_once_the_partitions_were_read_up_to_its_offsets() -> None:
    c = clock()
    c.started(PRICES[0], 0, N0)
    c.started(PRICES[1], 40, N0)  # reading starts at offset 40 (start_at / resume)
    c.started(APY[0], 0, N0)
    arrive(c, PRICES[0], 0, T0 + 1_000)
    c.marker(marker(T0 + 2 * MIN, {"cc.prices": {"0": 2, "1": 40}, "dl.apy": {"0": 0}}), now=N0 + 0.0)
    assert closable(c) == []  # cc.prices-0 offset 1 not read yet
    arrive(c, PRICES[0], 1, T0 + 70_000)
    assert closable(c) == [T0 + MIN, T0 + 2 * MIN]  # up to the marker, past the newest input


def test_marker_run_start_fixes_the_first_bucket_before_anything_closed() -> None:
    c = clock()
    start = marker(T0 + 30_000, {"cc.prices": {"0": 0}}, announced_s=0.0)
    c.marker(start.model_copy(update={"run_start": time_text(T0 - 90_000)}), now=N0 + 0.0)
    arrive(c, PRICES[0], 0, T0 + 10_000)
    assert c.next_bucket() == T0 - MIN  # the run's first message was earlier (another topic)


def test_restored_state_keeps_closed_buckets_and_restarts_idle_timers() -> None:
    c = clock(now=N0 + 0.0)
    for place in (*PRICES, *APY):
        arrive(c, place, 0, T0 + 1_000)
        arrive(c, place, 1, T0 + 65_000)
    assert closable(c) == [T0 + MIN]
    config = c.config
    restored = BucketClock(config, c.state, now=N0 + 500.0)
    assert restored.next_bucket() == T0 + 2 * MIN
    assert arrive(restored, PRICES[0], 2, T0 + 59_000, now=N0 + 500.0) is True
    assert restored.wake_at(N0 + 500.0) == N0 + 510.0  # idle timers start again from the restart


def test_idle_timers_of_silent_partitions_start_with_the_first_message_not_at_start_up() -> None:
    c = clock(now=N0 + 0.0, idle=10.0)  # the flow waited 100 s for its first input
    arrive(c, PRICES[0], 0, T0 + 1_000, now=N0 + 100.0)
    arrive(c, PRICES[0], 1, T0 + 3 * MIN, now=N0 + 100.0)
    arrive(c, PRICES[0], 2, T0 + 3 * MIN + 1, now=N0 + 104.0)
    assert closable(c, now=N0 + 105.0) == []  # dl.apy has had only 5 s to say something
    assert c.wake_at(N0 + 105.0) == N0 + 110.0
    # (cc.prices-0's own clock has moved past T0+3min plus lateness since 104 s: that one too)
    assert closable(c, now=N0 + 110.0) == [T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN]


# --- the live clock: the wall clock bounds event time (docs/streaming.md, "The live clock")

YEAR_2100 = 4_102_444_800_000


def test_a_far_future_stamp_moves_the_clock_no_further_than_the_wall_clock() -> None:
    now = T0 / 1000 + 30  # the wall clock is inside the first bucket
    c = clock(now=now, idle=10.0)
    for place in (*PRICES, *APY):
        arrive(c, place, 0, T0 + 20_000, now=now)
    assert arrive(c, PRICES[0], 1, YEAR_2100, now=now) is False  # kept: its bucket will come
    # every other partition falls silent; the stamped one counts only up to the wall clock + 5 s
    assert closable(c, now=now + 20) == []  # T0+50 s: the first bucket has not ended yet
    assert closable(c, now=now + 32) == [T0 + MIN]  # its end plus the lateness has passed
    assert closable(c, now=now + 3600) == []  # an hour of silence: nothing new to say, no run-away
    later = now + 3600
    arrive(c, APY[0], 1, int(later * 1000), now=later)  # one feed comes back, stamped with the wall clock
    closed = closable(c, now=later + 30)
    assert closed == list(range(T0 + 2 * MIN, int(later * 1000) // MIN * MIN + 1, MIN))  # minute by minute
    assert c.next_bucket() == int(later * 1000) // MIN * MIN + MIN  # the current minute stays open


def test_a_restored_snapshot_with_a_future_stamp_does_not_run_away() -> None:
    c = clock(now=N0)
    for place in (*PRICES, *APY):
        arrive(c, place, 0, T0 + 1_000)
    c.state.partitions[PRICES[0]].max_event_ms = YEAR_2100  # as an older version stored it
    c.state.max_bucket_ms = YEAR_2100
    restored = BucketClock(c.config, c.state, now=N0)
    closed = closable(restored, now=N0 + 60)
    assert closed and max(closed) <= (N0 + 60) * 1000


def test_no_bucket_closes_before_the_wall_clock_passes_its_end_plus_the_lateness() -> None:
    now = T0 / 1000 + 50
    c = clock(now=now, idle=1.0)
    for place in (*PRICES, *APY):
        arrive(c, place, 0, T0 + 10_000, now=now)
        arrive(c, place, 1, T0 + 64_000, now=now)  # source clocks ahead by a few seconds
    assert closable(c, now=now + 5) == []  # every partition passed, all idle: still T0+55 s
    assert c.wake_at(now + 5) == (T0 + MIN + 2_000) / 1000
    assert closable(c, now=(T0 + MIN + 2_000) / 1000) == [T0 + MIN]


def test_an_unreachable_broker_stops_idleness_until_a_grace_after_it_is_back() -> None:
    now = T0 / 1000 + 55  # live: records arrive stamped with the wall clock
    c = clock(now=now, idle=10.0)
    for place in (*PRICES, *APY):
        arrive(c, place, 0, T0 + 55_000, now=now)
    c.connection(False, now + 1)  # the broker dies: nothing can be read
    assert closable(c, now=now + 10) == []  # T0+65 s: the first bucket waits for its data
    assert closable(c, now=now + 30) == []  # silence is ours, not the sources'
    c.connection(True, now + 30)
    assert closable(c, now=now + 40) == []  # grace: the backlog produced meanwhile is on its way
    arrive(c, PRICES[0], 1, T0 + 58_000, now=now + 41)  # ... it arrives, on time
    assert closable(c, now=now + 44) == []
    assert closable(c, now=now + 46) == [T0 + MIN]  # grace over: the quiet partitions release it


def test_a_partition_silent_beyond_its_cadence_is_noted_at_close() -> None:
    config = clock().config
    config = type(config)(**{**config.__dict__, "quiet_note_after_ms": {"cc.prices": 30_000, "dl.apy": 7_200_000}})
    c = BucketClock(config, None, N0)
    for place in (*PRICES, *APY):
        arrive(c, place, 0, T0 + 1_000, now=N0)
    arrive(c, PRICES[0], 1, T0 + 50_000, now=N0 + 40)
    assert c.quiet_partitions(N0 + 40) == [PRICES[1]]  # dl.apy's hour of quiet is normal; cc.prices-1 is not
