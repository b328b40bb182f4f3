"""History: which records a resume after a position gets, and when it must be refused."""

import orjson
import pytest

from syi_shared.timefmt import millis
from ws_gateway.history import History, ResumeRefused

HOUR_MS = 3_600_000
T0 = 1_900_000_000_000  # produce times, ms


def record(minute: int, revision: int = 0) -> bytes:
    return orjson.dumps({"bucket_end": f"2030-03-17T17:{minute:02d}:00.000Z", "revision": revision})


def filled(now_ms: int = T0) -> History:
    """Records of minutes 1..5 at positions 10, 12, 14, 16, 18 (transaction markers between)."""
    history = History(window_seconds=24 * 3600, clock=lambda: now_ms / 1000)
    history.started(10)
    for i, minute in enumerate(range(1, 6)):
        history.append(10 + 2 * i, record(minute), T0 - 1000 + i)
    return history


def test_after_a_position_are_the_later_records_in_order():
    history = filled()
    assert [e.seq for e in history.after(12)] == [14, 16, 18]
    assert [e.seq for e in history.after(13)] == [14, 16, 18], "a marker's position resumes after it too"
    assert history.after(18) == []
    assert [e.seq for e in history.after(9)] == [10, 12, 14, 16, 18], "right before the first held record"


def test_a_bucket_resumes_after_its_latest_revision():
    history = filled()
    history.append(20, record(2, revision=1), T0)
    minute_2 = orjson.loads(record(2))["bucket_end"]
    assert history.position_of(millis(minute_2)) == 20
    assert history.position_of(millis("2030-03-17T17:30:00.000Z")) == 18, "not published yet: after the newest"
    assert history.position_of(millis("2030-03-17T17:03:30.000Z")) == 14, "between minutes: after the earlier one"


def test_positions_older_than_what_is_held_are_refused():
    history = filled()
    with pytest.raises(ResumeRefused, match="further back"):
        history.after(5)
    with pytest.raises(ResumeRefused, match="older than the oldest record"):
        history.position_of(millis("2030-03-17T16:00:00.000Z"))
    # a record of an old bucket published lately does not make a resume from before the window servable
    history.append(20, orjson.dumps({"bucket_end": "2030-03-16T16:00:00.000Z", "revision": 1}), T0)
    with pytest.raises(ResumeRefused, match="at most the last 24 h"):
        history.position_of(millis("2030-03-16T17:00:00.000Z"))


def test_the_window_drops_old_records_and_raises_the_floor():
    history = filled(now_ms=T0 + 24 * HOUR_MS - 1000 + 2)  # the first two are now older than 24 h
    history.append(20, record(6), T0 + 24 * HOUR_MS)
    assert [e.seq for e in history.entries] == [14, 16, 18, 20]
    assert history.floor == 13
    assert [e.seq for e in history.after(12)] == [14, 16, 18, 20], "the last dropped position still resumes"
    with pytest.raises(ResumeRefused):
        history.after(10)


def test_nothing_can_be_resumed_before_the_follower_started():
    history = History(window_seconds=60)
    with pytest.raises(ResumeRefused, match="still reading"):
        history.after(0)
