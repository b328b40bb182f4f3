"""The bucket clock of the streaming calculators (syi_shared.streaming.BucketClock): when a
minute bucket may close, what is late, and how progress markers and idleness interact."""

from __future__ import annotations

from syi_shared.streaming import BucketClock, ClockConfig, ProgressMarker, time_text

T0 = 1_795_000_020_000 // 60_000 * 60_000  # a whole minute
MIN = 60_000
PRICES = [("cc.prices", 0), ("cc.prices", 1)]
APY = [("dl.apy", 0)]


def clock(now: float = 0.0, idle: float = 10.0) -> BucketClock:
    config = ClockConfig(
        input_topics=("cc.prices", "dl.apy"),
        clocked_topics=("cc.prices", "dl.apy"),
        partitions=(*PRICES, *APY),
        lateness_ms=2_000,
        idle_timeout_s=idle,
        progress_timeout_ms=30_000,
    )
    return BucketClock(config, None, now)


def arrive(c: BucketClock, place: tuple[str, int], offset: int, event_ms: int, now: float = 0.0) -> bool:
    return c.arrived(place, offset, event_ms // MIN * MIN + MIN, event_ms, now)


def closable(c: BucketClock, now: float = 0.0) -> list[int]:
    """Close every bucket the clock allows, as the step does; returns their ends."""
    closed = []
    while (t := c.next_bucket()) is not None and c.may_close(t, now):
        c.closed(t)
        closed.append(t)
    return closed


def marker(upto_ms: int, offsets: dict[str, dict[str, int]], final: bool = False, announced_s: float = 0.0) -> ProgressMarker:
    return ProgressMarker(
        source="tape", upto=time_text(upto_ms), offsets=offsets, final=final,
        announced_at=time_text(int(announced_s * 1000)),
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
    c = clock(now=0.0, idle=10.0)
    arrive(c, PRICES[0], 0, T0 + 1_000, now=1.0)
    arrive(c, PRICES[0], 1, T0 + 3 * MIN, now=1.0)  # dl.apy and cc.prices-1 never deliver anything
    arrive(c, PRICES[0], 2, T0 + 3 * MIN + 1, now=5.0)
    assert closable(c, now=9.0) == []
    assert c.wake_at(9.0) == 11.0  # when the silent partitions turn idle (timers run from the first input)
    # cc.prices-0 passed the first two; its watermark, advancing with the wall clock since its
    # last message at 5.0 s, has passed the third's end plus lateness too (T0+3min+6 s at 11 s)
    assert closable(c, now=11.0) == [T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN]
    # When every partition is idle, buckets close up to the one holding the newest input, not beyond.
    assert closable(c, now=15.0) == [T0 + 4 * MIN]
    assert closable(c, now=100.0) == []


def test_a_quiet_partitions_watermark_advances_with_the_wall_clock() -> None:
    c = clock(now=0.0, idle=100.0)
    for place in (*PRICES, *APY):
        arrive(c, place, 0, T0 + 30_000, now=0.0)
    arrive(c, PRICES[0], 1, T0 + 70_000, now=40.0)
    # the others last spoke at 0 s about T0+30 s: by 31.999 s their clock reads T0+61.999 s
    assert closable(c, now=31.999) == []
    assert c.wake_at(31.999) == 32.0
    assert closable(c, now=32.0) == [T0 + MIN]  # T0+62 s = the end (T0+60 s) plus the lateness


def test_a_running_replay_turns_idleness_off_until_its_final_marker_is_reached() -> None:
    c = clock(now=0.0, idle=1.0)
    c.marker(marker(T0, {"cc.prices": {"0": 0, "1": 0}, "dl.apy": {"0": 0}}, announced_s=0.0), now=0.0)
    arrive(c, PRICES[0], 0, T0 + 1_000, now=0.5)
    arrive(c, PRICES[1], 0, T0 + 5 * MIN, now=0.5)
    arrive(c, PRICES[0], 1, T0 + 5 * MIN, now=0.5)
    assert closable(c, now=20.0) == []  # dl.apy silent for 20 s, but a replay is running
    arrive(c, APY[0], 0, T0 + 30_000, now=21.0)  # ... so its slow message still counts
    final = marker(T0 + 5 * MIN, {"cc.prices": {"0": 2, "1": 1}, "dl.apy": {"0": 1}}, final=True, announced_s=21.0)
    c.marker(final, now=21.0)
    assert closable(c, now=21.0) == [T0 + MIN * k for k in range(1, 6)]  # the marker closes the tail
    assert not c.replaying(21.0)


def test_a_marker_counts_only_once_the_partitions_were_read_up_to_its_offsets() -> None:
    c = clock()
    c.started(PRICES[0], 0, 0.0)
    c.started(PRICES[1], 40, 0.0)  # reading starts at offset 40 (start_at / resume)
    c.started(APY[0], 0, 0.0)
    arrive(c, PRICES[0], 0, T0 + 1_000)
    c.marker(marker(T0 + 2 * MIN, {"cc.prices": {"0": 2, "1": 40}, "dl.apy": {"0": 0}}), now=0.0)
    assert closable(c) == []  # cc.prices-0 offset 1 not read yet
    arrive(c, PRICES[0], 1, T0 + 70_000)
    assert closable(c) == [T0 + MIN, T0 + 2 * MIN]  # up to the marker, past the newest input


def test_marker_run_start_fixes_the_first_bucket_before_anything_closed() -> None:
    c = clock()
    start = marker(T0 + 30_000, {"cc.prices": {"0": 0}}, announced_s=0.0)
    c.marker(start.model_copy(update={"run_start": time_text(T0 - 90_000)}), now=0.0)
    arrive(c, PRICES[0], 0, T0 + 10_000)
    assert c.next_bucket() == T0 - MIN  # the run's first message was earlier (another topic)


def test_restored_state_keeps_closed_buckets_and_restarts_idle_timers() -> None:
    c = clock(now=0.0)
    for place in (*PRICES, *APY):
        arrive(c, place, 0, T0 + 1_000)
        arrive(c, place, 1, T0 + 65_000)
    assert closable(c) == [T0 + MIN]
    config = c.config
    restored = BucketClock(config, c.state, now=500.0)
    assert restored.next_bucket() == T0 + 2 * MIN
    assert arrive(restored, PRICES[0], 2, T0 + 59_000, now=500.0) is True
    assert restored.wake_at(500.0) == 510.0  # idle timers start again from the restart


def test_idle_timers_of_silent_partitions_start_with_the_first_message_not_at_start_up() -> None:
    c = clock(now=0.0, idle=10.0)  # the flow waited 100 s for its first input
    arrive(c, PRICES[0], 0, T0 + 1_000, now=100.0)
    arrive(c, PRICES[0], 1, T0 + 3 * MIN, now=100.0)
    arrive(c, PRICES[0], 2, T0 + 3 * MIN + 1, now=104.0)
    assert closable(c, now=105.0) == []  # dl.apy has had only 5 s to say something
    assert c.wake_at(105.0) == 110.0
    # (cc.prices-0's own clock has moved past T0+3min plus lateness since 104 s: that one too)
    assert closable(c, now=110.0) == [T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN]
