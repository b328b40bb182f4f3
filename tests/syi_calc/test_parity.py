"""Streaming == batch: a tape played into the real broker through ray-calc and syi-calc (real
processes) gives the records `syi compute` gives, field by field except published_at."""

from __future__ import annotations

from pathlib import Path

import pytest

from syi_cli.compute import ComputeResult, compute_tape
from syi_cli.tape import play_tape
from syi_shared.methodology.params import load_methodology
from syi_shared.serde import dumps
from syi_shared.settings import ServiceSettings
from syi_shared.timefmt import now_text, parse_utc, to_millis
from tests.ray_calc.streams import DEMO_TAPE, Calculator, comparable, make_tape, play, values_since, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def now_ms() -> int:
    return to_millis(parse_utc(now_text()))


@pytest.fixture(scope="module")
def demo_batch() -> ComputeResult:
    return compute_tape(DEMO_TAPE, load_methodology())


def run_both(
    tape: Path, settings: ServiceSettings, tmp: Path, expected: int, workers: int = 1,
    speed: float | None = None, window_minutes: int | None = None, env: dict[str, str] | None = None,
) -> tuple[int, list[dict]]:
    """Start both services, play the tape, wait for `expected` index values; returns (since, values)."""
    since = now_ms()
    env = {"SYI_WORKERS": str(workers), **(env or {})}
    ray = Calculator("ray_calc", settings, since, tmp, env).start()
    syi = Calculator("syi_calc", settings, since, tmp, env).start()
    try:
        play(tape, settings, speed=speed, window_minutes=window_minutes)
        values = wait_for(
            lambda: (v := values_since(settings, "syi.calculated", since)) and len(v) >= expected and v,
            240, f"{expected} syi.calculated records",
        )
        assert ray.healthy() and syi.healthy()
    finally:
        ray.stop(), syi.stop()
    return since, values


def assert_same_index(streamed: list[dict], batch: ComputeResult) -> None:
    expected = [comparable(value.model_dump(mode="json")) for value in batch.values]
    assert [v["bucket_end"] for v in streamed] == [v["bucket_end"] for v in expected]
    for got, want in zip(streamed, expected):
        assert comparable(got) == want, f"bucket {want['bucket_end']} differs"


def test_demo_tape_at_max_speed_equals_batch(provisioned: ServiceSettings, tmp_path: Path, demo_batch: ComputeResult) -> None:
    since, values = run_both(DEMO_TAPE, provisioned, tmp_path, len(demo_batch.values))
    assert_same_index(values, demo_batch)
    # ray-calc's records too: one per candidate per bucket, identical to the batch's
    rays = values_since(provisioned, "ray.calculated", since)
    want = sorted((r.bucket_end, r.symbol, dumps(comparable(r))) for b in demo_batch.ray_buckets for r in b.rays)
    got = sorted((r["bucket_end"], r["symbol"], dumps(comparable(r))) for r in rays)
    assert got == want
    # where each record's inputs were read up to: every input partition, offsets never going back
    last: dict[tuple[str, str], int] = {}
    for record in sorted(rays, key=lambda r: r["bucket_end"]):
        assert set(record["input_offsets"]) == {"cc.prices", "cc.orderbook", "dl.apy"}
        for topic, partitions in record["input_offsets"].items():
            for partition, offset in partitions.items():
                assert offset >= last.get((topic, partition), 0)
                last[(topic, partition)] = offset


def test_demo_tape_with_two_workers_equals_batch(provisioned: ServiceSettings, tmp_path: Path, demo_batch: ComputeResult) -> None:
    _, values = run_both(DEMO_TAPE, provisioned, tmp_path, len(demo_batch.values), workers=2)
    assert_same_index(values, demo_batch)


def test_slow_replay_in_windows_equals_batch(provisioned: ServiceSettings, tmp_path: Path) -> None:
    """65 min of tape at 240x in 5-minute windows, a progress marker after each: the mid-tape
    ex.mktcap (30 min) and dl.apy (60 min) updates arrive after their partitions were silent
    far longer than the 1 s idle timeout, and still count (markers keep idleness off)."""
    tape = make_tape(tmp_path / "slow.jsonl", "65m")
    batch = compute_tape(tape, load_methodology())
    _, values = run_both(
        tape, provisioned, tmp_path, len(batch.values), speed=240, window_minutes=5,
        env={"SYI_IDLE_TIMEOUT_SECONDS": "1"},
    )
    assert_same_index(values, batch)


def test_backfill_with_tail_off_runs_to_the_end_and_equals_batch(provisioned: ServiceSettings, tmp_path: Path) -> None:
    """SYI_TAIL=false (a backfill of what is already in Kafka, no markers): each service stops
    at the end of its input, closing the remaining buckets on that end (Bytewax EOF)."""
    tape = make_tape(tmp_path / "backfill.jsonl", "30m")
    batch = compute_tape(tape, load_methodology())
    since = now_ms()
    play_tape(tape, provisioned)
    for module in ("ray_calc", "syi_calc"):  # one after the other: syi-calc's input is ray-calc's output
        calculator = Calculator(module, provisioned, since, tmp_path, {"SYI_TAIL": "false"})
        calculator.start(wait=False)
        assert calculator.process is not None and calculator.process.wait(120) == 0, calculator.log_tail()
        assert "end of input" in calculator.log_tail()
    assert_same_index(values_since(provisioned, "syi.calculated", since), batch)
