"""`syi restate --from-topics` end to end, against the real broker and real ray-calc / syi-calc
processes: the interval recomputed from syi-calc's checkpoint and the input topics under a
changed rebalance parameter gives the same values as the tape path, and the same revisions once
published, in a chain `syi verify` accepts; so does a ray-level change (ray-calc recomputed from
its own checkpoint); what it cannot recompute faithfully is refused: a windowed parameter, one
the weights depend on with no daily rebalance after the checkpoint, and an interval whose
checkpoint the state topic no longer holds (retention)."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from syi_cli import restate as restating
from syi_cli import verify
from syi_cli.compute import compute_tape
from syi_cli.tape import play_tape
from syi_cli.verify import records_on_topic
from syi_shared.methodology.params import load_methodology
from syi_shared.settings import ServiceSettings
from syi_shared.streaming.progress import announce_progress, bucket_end_of
from syi_shared.streaming.restore import reader
from syi_shared.timefmt import time_text
from syi_shared.topics import SYI_CALCULATED, state_topic
from tests.cli.conftest import syi
from tests.conftest import REPO_ROOT
from tests.ray_calc.streams import MINUTE, Calculator, comparable, make_tape, tape_span, values_since, wait_for
from tests.syi_calc.test_parity import now_ms

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REASON = "methodology 3.0.1: weights capped at 30 %"
UNCHAINED = ("prev_cid", "cid")  # the chain differs between a recomputation and what syi-calc publishes


def methodology_file(tmp_path: Path, name: str, old: str, new: str) -> Path:
    text = (REPO_ROOT / "methodology.toml").read_text()
    assert 'version = "3.0.0"' in text and old in text
    path = tmp_path / f"methodology-{name}.toml"
    path.write_text(text.replace('version = "3.0.0"', 'version = "3.0.1"', 1).replace(old, new, 1))
    return path


def values_of(record: dict | object) -> dict:
    return {k: v for k, v in comparable(record).items() if k not in UNCHAINED}


def test_restate_from_topics(provisioned: ServiceSettings, tmp_path: Path) -> None:
    tape = make_tape(tmp_path / "tape.jsonl", "12m")
    batch = compute_tape(tape, load_methodology())
    span = tape_span(tape)
    start = span.first_ms // MINUTE * MINUTE
    middle = start + 7 * MINUTE
    restated = (time_text(start + 2 * MINUTE), time_text(start + 4 * MINUTE))  # after the run's first rebalance
    late = (time_text(start + 10 * MINUTE), time_text(start + 11 * MINUTE))  # after the restart's checkpoint
    cap = methodology_file(tmp_path, "cap", "cap = 0.45", "cap = 0.30")
    since = now_ms()
    ray = Calculator("ray_calc", provisioned, since, tmp_path).start()
    syi_calc = Calculator("syi_calc", provisioned, since, tmp_path).start()
    bootstrap = provisioned.kafka_config()["bootstrap.servers"]

    def restate(interval: tuple[str, str], methodology: Path, *extra: str):
        done = syi("restate", "--from", interval[0], "--to", interval[1], "--reason", REASON, "--from-topics",
                   "--methodology", str(methodology), "--instance", syi_calc.instance, "--ray-instance", ray.instance,
                   "--bootstrap", bootstrap, "--since-ms", str(since), "--timeout", "60", *extra)
        return done.__class__(done.args, done.returncode, done.stdout, " ".join(done.stderr.split()))  # unwrapped

    def same_as_the_tape(interval: tuple[str, str], methodology: Path) -> list:
        first, last = restating.bucket_range(*interval)
        rules = load_methodology(methodology)
        from_topics = restating.recompute_from_topics(provisioned, load_methodology(), rules, first, last,
                                                      syi_calc.instance, since, ray.instance)
        from_tape = restating.recompute(tape, rules, first, last)
        assert [v.bucket_end for v in from_topics] == [v.bucket_end for v in from_tape] == [
            time_text(t) for t in range(first, last + 1, MINUTE)]
        assert [values_of(v) for v in from_topics] == [values_of(v) for v in from_tape]
        return from_tape

    try:
        announce_progress(provisioned, span.first_ms, run_start_ms=span.first_ms)
        play_tape(tape, provisioned, end_ms=middle)
        announce_progress(provisioned, middle)
        wait_for(lambda: len(values_since(provisioned, SYI_CALCULATED, since)) >= 5, 90, "the first records")
        ray.stop(), syi_calc.stop()
        ray.start(), syi_calc.start()  # their first closes write checkpoints with state in them
        play_tape(tape, provisioned, start_ms=middle)
        announce_progress(provisioned, bucket_end_of(span.last_ms), final=True)
        originals = wait_for(lambda: len(v := values_since(provisioned, SYI_CALCULATED, since)) >= len(batch.values)
                             and v, 90, "the whole tape")

        # the same values as from the tape: the checkpoint of the run's start holds no weights yet
        from_tape = same_as_the_tape(restated, cap)
        # a ray-level change: ray-calc recomputed too, from its checkpoint and the raw inputs,
        # here from syi-calc's checkpoint after the restart
        kappa = methodology_file(tmp_path, "kappa", "kappa = 2.0", "kappa = 3.0")
        same_as_the_tape(late, kappa)

        done = restate(restated, cap)
        assert done.returncode == 0, (done.stdout.decode(), done.stderr)
        records = values_since(provisioned, SYI_CALCULATED, since)
        revisions = records[len(originals):]
        assert [r["bucket_end"] for r in revisions] == [v.bucket_end for v in from_tape]
        by_bucket = {r["bucket_end"]: r for r in originals}
        for revision, want in zip(revisions, from_tape):
            assert (revision["revision"], revision["supersedes_cid"]) == (1, by_bucket[want.bucket_end]["cid"])
            assert revision["restatement_reason"] == REASON and revision["methodology_version"] == "3.0.1"
            assert {k: v for k, v in values_of(revision).items() if k not in ("revision", "supersedes_cid",
                    "restatement_reason")} == {k: v for k, v in values_of(want).items() if k not in (
                    "revision", "supersedes_cid", "restatement_reason")}
        again = restate(restated, cap)
        assert again.returncode == 0 and b"nothing to publish" in again.stdout, again.stdout.decode()

        # from the restart's checkpoint on, the old parameters live in syi-calc's state
        windowed = restate(late, methodology_file(tmp_path, "caps", "market_cap = 172800", "market_cap = 86400"))
        assert windowed.returncode == 2 and "windowed parameters (freshness_seconds.market_cap)" in windowed.stderr
        rebalance = restate(late, cap, "--dry-run")
        assert rebalance.returncode == 2, rebalance.stderr
        assert "parameters the weights in force depend on (weights.cap)" in rebalance.stderr
        liquidity = restate(late, methodology_file(tmp_path, "band", "band_bps = 50", "band_bps = 40"), "--dry-run")
        assert liquidity.returncode == 2 and "depend on (liquidity.band_bps)" in liquidity.stderr, liquidity.stderr
        peg = restate(late, methodology_file(tmp_path, "peg", "window_minutes = 1440", "window_minutes = 60"))
        assert peg.returncode == 2 and "(peg.window_minutes)" in peg.stderr, peg.stderr
        for refusal in (windowed, rebalance, liquidity, peg):
            assert "syi tape record --from-archive" in refusal.stderr and "--tape" in refusal.stderr
    finally:
        ray.stop(), syi_calc.stop()

    # `syi verify`'s checks over this run's records (its first record links to an earlier test's)
    previous, latest, n = ("before this run", records[0]["prev_cid"]), {}, 0
    for n, (where, record) in enumerate(records_on_topic(provisioned, SYI_CALCULATED, since), 1):
        assert verify._check(record, previous, {}) is None and verify._check_revision(record, latest) is None, where
        previous = (where, record["cid"])
        latest[(record["index_id"], record["bucket_end"])] = verify.Revision(where, record["revision"], record["cid"])
    assert n == len(records)

    # retention: the state topic no longer holds a checkpoint at or before the interval
    topic = state_topic("syi-calc")
    consumer = reader(provisioned)
    try:
        end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30, cached=False)[1]
    finally:
        consumer.close()
    admin = AdminClient(provisioned.kafka_config())  # kept: its futures die with it
    for deleted in admin.delete_records([TopicPartition(topic, 0, end)]).values():
        deleted.result(timeout=60)
    gone = restate(restated, cap, "--dry-run")
    assert gone.returncode == 2 and "no longer holds a checkpoint" in gone.stderr, gone.stderr
    assert "syi tape record --from-archive" in gone.stderr and "--tape" in gone.stderr
