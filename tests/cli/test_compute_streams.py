"""`syi compute` streams: buckets come out while the tape is still being read, and what a run
holds does not grow with the tape (only the methodology's windows do, up to their span)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import orjson
import pytest

from syi_cli.compute import ComputeCounts, stream_tape
from syi_cli.tape import BadLine, ReadProgress, read_tape
from syi_shared.methodology import load_methodology
from syi_shared.methodology.engine import BatchRun, OutOfOrder, iter_run
from syi_shared.timefmt import time_text
from tests.cli.conftest import make_tape, syi

M = load_methodology()


@pytest.fixture(scope="module")
def tapes(generator: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("streams")
    return {length: make_tape(generator, folder / f"{length}.jsonl", length) for length in ("2h", "8h")}


def test_the_first_bucket_comes_out_before_the_tape_is_read(tapes: dict[str, Path]) -> None:
    reading, counts = ReadProgress(), ComputeCounts()
    stream = stream_tape(tapes["2h"], M, counts=counts, progress=reading)
    ray_bucket, value = next(stream)
    total = sum(1 for _ in tapes["2h"].open("rb"))
    assert value is not None and value.bucket_end == time_text(ray_bucket.bucket_end_ms)
    assert not reading.done and reading.lines < total / 10  # a few minutes of tape read, of two hours
    assert counts.buckets == 1
    rest = list(stream)
    assert reading.done and reading.lines == total and counts.buckets == 1 + len(rest) == 120


def _held(run: BatchRun) -> dict[str, int]:
    """What a run holds, by kind: inputs waiting for their bucket, the engines' live observations
    and pending records, and the entries of the peg windows."""
    ray, index = run.ray_engine.state, run.index_engine.state
    return {
        "pending inputs": run.held(),
        "observations": len(ray.prices) + len(ray.books) + len(ray.pools) + len(index.market_caps) + len(index.tbills),
        "pending rays": sum(len(records) for records in index.rays.values()),
        "24 h window": max(len(window) for window in ray.peg_losses.values()),
        "30 d window": max(len(window) for window in ray.peg_prices.values()),
    }


def _run_to_the_end(tape: Path) -> tuple[BatchRun, int]:
    run, buckets = BatchRun(M, time_text), 0
    for item in read_tape(tape):
        assert not isinstance(item, BadLine)
        buckets += sum(1 for _ in run.feed(item.topic, item.value, (0, item.line)))
    return run, buckets  # not finished: the last hour is still held, as mid-way through a long tape


def test_what_a_run_holds_does_not_grow_with_the_tape(tapes: dict[str, Path]) -> None:
    short, short_buckets = _run_to_the_end(tapes["2h"])
    long, long_buckets = _run_to_the_end(tapes["8h"])
    assert long_buckets == short_buckets + 6 * 60
    held_short, held_long = _held(short), _held(long)
    # Inputs, observations and records: the same size after 8 h as after 2 h (the tapes differ
    # only by chance), nowhere near 4 times as much.
    for kind in ("pending inputs", "observations", "pending rays"):
        assert held_long[kind] <= 1.3 * held_short[kind] + 10, (kind, held_short, held_long)
    assert held_long["pending inputs"] <= 150 * 6  # five minutes of inputs (about 100 a minute) at most
    # Windows hold one entry a bucket up to their span: 24 h and 30 days, not the tape.
    assert held_short["30 d window"] == short_buckets and held_long["30 d window"] == long_buckets
    assert held_long["24 h window"] == long_buckets <= M.peg.window_minutes


def test_a_window_stops_at_its_span(tapes: dict[str, Path]) -> None:
    rules = M.model_copy(update={"peg": M.peg.model_copy(update={"window_minutes": 90})})
    run = BatchRun(rules, time_text)
    buckets = 0
    for item in read_tape(tapes["2h"]):
        buckets += sum(1 for _ in run.feed(item.topic, item.value, (0, item.line)))  # type: ignore[union-attr]
    buckets += sum(1 for _ in run.finish())
    assert buckets == 120 and max(len(w) for w in run.ray_engine.state.peg_losses.values()) == 90


def test_an_input_later_than_the_reorder_window_is_refused(tapes: dict[str, Path], tmp_path: Path) -> None:
    lines = tapes["2h"].read_bytes().splitlines()
    early = lines[5]  # an input of the first minute, moved to the end of the tape
    shuffled = tmp_path / "late.jsonl"
    shuffled.write_bytes(b"\n".join([*lines[:5], *lines[6:], early]) + b"\n")
    with pytest.raises(OutOfOrder, match="out of event-time order by more than 5 min"):
        list(iter_run(((i.topic, i.value, (0, i.line)) for i in read_tape(shuffled)), M, time_text))  # type: ignore[union-attr]

    done = syi("compute", "--tape", str(shuffled))
    assert done.returncode == 1 and "cannot compute" in done.stderr and f"position {len(lines)}" in done.stderr
    assert done.stdout.count(b"\n") == 120 - 5  # what closed before is out; the rest is refused, not wrong


def test_a_shuffled_hour_computes_as_the_ordered_tape(tapes: dict[str, Path], tmp_path: Path) -> None:
    lines = tapes["2h"].read_bytes().splitlines()
    swapped = lines[:100] + lines[100:400][::-1] + lines[400:]  # a few minutes of tape backwards
    shuffled = tmp_path / "swapped.jsonl"
    shuffled.write_bytes(b"\n".join(swapped) + b"\n")
    ordered = syi("compute", "--tape", str(tapes["2h"]))
    again = syi("compute", "--tape", str(shuffled))
    assert ordered.returncode == again.returncode == 0, again.stderr
    # Same records but for the tie-breaking line numbers, which only matter for exact duplicates.
    assert [orjson.loads(line)["syi_decimal"] for line in again.stdout.splitlines()] == \
           [orjson.loads(line)["syi_decimal"] for line in ordered.stdout.splitlines()]


def test_no_progress_is_drawn_when_stderr_is_not_a_terminal(tapes: dict[str, Path]) -> None:
    done = syi("compute", "--tape", str(tapes["2h"]))
    assert done.returncode == 0
    assert done.stderr == "computed 120 buckets from " + done.stderr.split("from ", 1)[1]  # one summary line only
    assert done.stderr.count("\n") == 1
