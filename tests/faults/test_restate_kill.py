"""A restatement under a crash (docs/operations.md, "Restating"): syi-calc is SIGKILLed the moment
the request reaches the broker (it is reading it), or the moment its revision record does (its
transaction is committing), and started again. A request whose revision was not committed is read
again (its position goes with the revision's transaction), one whose revision was is not: each
restated bucket gets exactly one revision, the chain stays unbroken, and the `syi restate` that was
waiting sees its revisions published."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from syi_cli.compute import compute_tape
from syi_shared.kafka import base_config
from syi_shared.methodology.params import load_methodology
from syi_shared.settings import ServiceSettings
from syi_shared.timefmt import time_text
from syi_shared.topics import SYI_CALCULATED, SYI_RESTATEMENTS
from tests.cli.conftest import SYI
from tests.ray_calc.streams import MINUTE, Calculator, make_tape, tape_span, values_since, wait_for
from tests.syi_calc.test_parity import now_ms
from tests.syi_calc.test_restate import REASON, assert_chain_verifies, changed_methodology, play_first_part

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.faults]


class FirstArrival:
    """Follows `topic` from its end with `read_uncommitted`: `seen` is set as soon as a message
    `wanted` reaches the broker (before its transaction, if any, commits)."""

    def __init__(self, settings: ServiceSettings, topic: str, wanted: Callable[[dict[str, Any]], bool]) -> None:
        self.wanted = wanted
        self.seen = threading.Event()
        self._stop = threading.Event()
        self.consumer = Consumer({
            **base_config(settings), "group.id": "syi-restate-watch", "enable.auto.commit": False,
            "isolation.level": "read_uncommitted", "fetch.wait.max.ms": 5,
        })
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in partitions])
        self.thread = threading.Thread(target=self._follow, name=f"watch-{topic}", daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            message = self.consumer.poll(0.01)
            if message is not None and not message.error() and self.wanted(orjson.loads(message.value())):
                self.seen.set()
                return

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.consumer.close()


def revisions_since(settings: ServiceSettings, since: int) -> list[dict[str, Any]]:
    return [v for v in values_since(settings, SYI_CALCULATED, since) if v["revision"] >= 1]


@pytest.mark.parametrize("moment", ["request", "revision"])
def test_a_kill_while_restating_loses_and_repeats_nothing(provisioned: ServiceSettings, tmp_path: Path,
                                                          moment: str) -> None:
    """`request`: killed as the request reaches syi.restatements (syi-calc reads it about then:
    most likely killed before its revision is committed); `revision`: killed as the revision
    record reaches syi.calculated (around its commit)."""
    tape = make_tape(tmp_path / "tape.jsonl", "10m")
    batch = compute_tape(tape, load_methodology())
    span = tape_span(tape)
    middle = span.first_ms // MINUTE * MINUTE + 8 * MINUTE
    first_part = [v for v in batch.values if v.bucket_end <= time_text(middle)]
    restated = [v.bucket_end for v in first_part[1:5]]
    since = now_ms()
    args = ["restate", "--from", restated[0], "--to", restated[-1], "--reason", REASON, "--tape", str(tape),
            "--methodology", str(changed_methodology(tmp_path)), "--timeout", "150",
            "--bootstrap", provisioned.kafka_config()["bootstrap.servers"], "--since-ms", str(since)]

    ray = Calculator("ray_calc", provisioned, since, tmp_path).start()
    syi_calc = Calculator("syi_calc", provisioned, since, tmp_path).start()
    watch: FirstArrival | None = None
    try:
        originals = play_first_part(provisioned, tape, span, middle, len(first_part), since)

        if moment == "request":
            watch = FirstArrival(provisioned, SYI_RESTATEMENTS, lambda request: request.get("bucket_end") in restated)
        else:
            watch = FirstArrival(provisioned, SYI_CALCULATED, lambda record: record.get("revision", 0) >= 1)
        restate = subprocess.Popen([SYI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert watch.seen.wait(120), f"no {moment} reached the broker"
        assert syi_calc.stop(signal.SIGKILL) == -signal.SIGKILL
        committed_at_kill = len(revisions_since(provisioned, since))
        syi_calc.start()
        out, err = restate.communicate(timeout=180)
        assert restate.returncode == 0, (out.decode(), err.decode())
        wait_for(lambda: len(revisions_since(provisioned, since)) >= len(restated), 60, "every revision")
        time.sleep(3)  # a repeated revision would come with the restarted service's first batches
        records = values_since(provisioned, SYI_CALCULATED, since)
        assert "resumed" in syi_calc.log_tail(400)
    finally:
        if watch is not None:
            watch.stop()
        ray.stop(), syi_calc.stop()

    print(f"killed at the first {moment}: {committed_at_kill} of {len(restated)} revisions were committed then")
    assert records[:len(originals)] == originals, "what was published stands unchanged"
    revisions = records[len(originals):]
    assert sorted(r["bucket_end"] for r in revisions) == restated, "one revision per restated bucket, none twice"
    by_bucket = {v["bucket_end"]: v for v in originals}
    for revision in revisions:
        assert (revision["revision"], revision["supersedes_cid"]) == (1, by_bucket[revision["bucket_end"]]["cid"])
        assert revision["restatement_reason"] == REASON
    assert assert_chain_verifies(provisioned, since, records[0]["prev_cid"]) == len(records)
