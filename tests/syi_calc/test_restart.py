"""syi-calc killed mid-tape (SIGKILL) and restarted from its checkpoint in Kafka: the records
equal the uninterrupted (batch) run's, none missing, none published twice, and the audit chain
continues from the topic's last record."""

from __future__ import annotations

import signal
from collections import defaultdict
from pathlib import Path

import pytest

from syi_cli.compute import compute_tape
from syi_cli.tape import play_tape
from syi_shared.methodology.params import load_methodology
from syi_shared.settings import ServiceSettings
from syi_shared.streaming.progress import announce_progress, bucket_end_of
from syi_shared.timefmt import time_text
from tests.ray_calc.streams import DEMO_TAPE, MINUTE, Calculator, comparable, tape_span, values_since, wait_for
from tests.syi_calc.test_parity import now_ms

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.mark.parametrize("checkpoint", ["kept", "lost"])
def test_sigkill_mid_tape_then_restart_resumes_without_gaps_or_conflicts(
    provisioned: ServiceSettings, tmp_path: Path, checkpoint: str
) -> None:
    """`lost`: the restart comes under a new instance id, so it finds no checkpoint (as if the
    state topic were gone): it recomputes from the start of the run, publishes only the buckets
    the topic does not hold yet, and chains them to its last record."""
    batch = compute_tape(DEMO_TAPE, load_methodology())
    want = {value.bucket_end: comparable(value.model_dump(mode="json")) for value in batch.values}
    span = tape_span(DEMO_TAPE)
    middle = span.first_ms // MINUTE * MINUTE + 195 * MINUTE
    first_half = sum(1 for bucket in want if bucket <= time_text(middle))

    since = now_ms()
    ray = Calculator("ray_calc", provisioned, since, tmp_path).start()
    syi = Calculator("syi_calc", provisioned, since, tmp_path).start()
    try:
        announce_progress(provisioned, span.first_ms, run_start_ms=span.first_ms)
        play_tape(DEMO_TAPE, provisioned, end_ms=middle)
        announce_progress(provisioned, middle)
        before = wait_for(
            lambda: len(v := values_since(provisioned, "syi.calculated", since)) >= first_half and v,
            120, f"the first {first_half} records",
        )
        assert syi.stop(signal.SIGKILL) == -signal.SIGKILL  # without warning

        announce_progress(provisioned, middle)  # the replay goes on
        play_tape(DEMO_TAPE, provisioned, start_ms=middle)
        announce_progress(provisioned, bucket_end_of(span.last_ms), final=True)
        if checkpoint == "lost":
            syi = Calculator("syi_calc", provisioned, since, tmp_path)  # another instance id: no checkpoint
        syi.start()

        def complete() -> list[dict] | None:
            values = values_since(provisioned, "syi.calculated", since)
            return values if len({value["bucket_end"] for value in values}) >= len(want) else None

        values = wait_for(complete, 120, f"all {len(want)} records")
        assert ("resumed" if checkpoint == "kept" else "no_checkpoint") in syi.log_tail(400)
    finally:
        ray.stop(), syi.stop()

    by_bucket: dict[str, list[dict]] = defaultdict(list)
    for value in values:
        by_bucket[value["bucket_end"]].append(value)
    assert sorted(by_bucket) == sorted(want)  # none missing, none extra
    assert [bucket for bucket, records in by_bucket.items() if len(records) > 1] == []  # none twice
    for bucket, [record] in by_bucket.items():
        assert comparable(record) == want[bucket], f"bucket {bucket} differs"
    assert before == values[:len(before)]  # what was published before the kill stands unchanged
