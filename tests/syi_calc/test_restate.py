"""`syi restate` end to end, against the real broker and real ray-calc / syi-calc processes: a
replayed tape restated with another methodology file gives revision records on syi.calculated
(revision 1, supersedes_cid, restatement_reason) in one unbroken chain that `syi verify` accepts;
the same command again publishes nothing; a stale request is dead-lettered; and syi-calc,
restarted afterwards, republishes nothing and chains the next minutes after the revisions."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from syi_cli.compute import compute_tape
from syi_cli.tape import play_tape
from syi_cli import verify
from syi_cli.verify import records_on_topic
from syi_shared.kafka import make_producer
from syi_shared.methodology.params import load_methodology
from syi_shared.models import RestatementRequest
from syi_shared.serde import dumps
from syi_shared.settings import ServiceSettings
from syi_shared.streaming.progress import announce_progress, bucket_end_of
from syi_shared.timefmt import now_text, time_text
from syi_shared.topics import SYI_CALCULATED, SYI_RESTATEMENTS
from tests.cli.conftest import syi
from tests.conftest import REPO_ROOT
from tests.ray_calc.streams import MINUTE, Calculator, comparable, make_tape, tape_span, values_since, wait_for
from tests.syi_calc.test_parity import now_ms

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REASON = "methodology 3.0.1: steeper risk discount (kappa 3)"


def changed_methodology(tmp_path: Path) -> Path:
    text = (REPO_ROOT / "methodology.toml").read_text()
    assert 'version = "3.0.0"' in text and "kappa = 2.0" in text
    path = tmp_path / "methodology-3.0.1.toml"
    path.write_text(text.replace('version = "3.0.0"', 'version = "3.0.1"', 1).replace("kappa = 2.0", "kappa = 3.0", 1))
    return path


def play_first_part(settings: ServiceSettings, tape: Path, span, middle: int, count: int,
                    since: int) -> list[dict[str, Any]]:
    """The tape up to `middle` as a replay, then the `count` records it gives (read from `since`)."""
    announce_progress(settings, span.first_ms, run_start_ms=span.first_ms)
    play_tape(tape, settings, end_ms=middle)
    announce_progress(settings, middle)
    return wait_for(lambda: len(v := values_since(settings, SYI_CALCULATED, since)) >= count and v,
                    90, f"the first {count} records")


def assert_chain_verifies(settings: ServiceSettings, since: int, first_prev_cid: str | None) -> int:
    """`syi verify`'s checks over the records from `since` (the first links to an earlier test's);
    how many there are."""
    previous, latest, count = ("before this run", first_prev_cid), {}, 0
    for where, record in records_on_topic(settings, SYI_CALCULATED, since):
        assert verify._check(record, previous, {}) is None and verify._check_revision(record, latest) is None, where
        previous = (where, record["cid"])
        latest[(record["index_id"], record["bucket_end"])] = verify.Revision(where, record["revision"], record["cid"])
        count += 1
    return count


def test_restate_publishes_revisions_once_through_syi_calc(provisioned: ServiceSettings, tmp_path: Path) -> None:
    tape = make_tape(tmp_path / "tape.jsonl", "12m")
    batch = compute_tape(tape, load_methodology())
    span = tape_span(tape)
    middle = span.first_ms // MINUTE * MINUTE + 8 * MINUTE
    first_part = [v for v in batch.values if v.bucket_end <= time_text(middle)]
    assert len(first_part) >= 4
    restated = [v.bucket_end for v in first_part[1:4]]
    bootstrap = provisioned.kafka_config()["bootstrap.servers"]
    methodology = changed_methodology(tmp_path)
    args = ["restate", "--from", restated[0], "--to", restated[-1], "--reason", REASON, "--tape", str(tape),
            "--methodology", str(methodology), "--bootstrap", bootstrap, "--timeout", "60"]

    since = now_ms()
    args += ["--since-ms", str(since)]
    ray = Calculator("ray_calc", provisioned, since, tmp_path).start()
    syi_calc = Calculator("syi_calc", provisioned, since, tmp_path).start()
    try:
        originals = play_first_part(provisioned, tape, span, middle, len(first_part), since)
        by_bucket = {v["bucket_end"]: v for v in originals}

        dry = syi(*args, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert b"dry run: nothing published" in dry.stdout and restated[0].encode() in dry.stdout
        assert len(values_since(provisioned, SYI_CALCULATED, since)) == len(originals)

        done = syi(*args)
        assert done.returncode == 0, (done.stdout.decode(), done.stderr)
        assert b"published" in done.stdout
        records = values_since(provisioned, SYI_CALCULATED, since)
        revisions = records[len(originals):]
        assert [r["bucket_end"] for r in revisions] == restated
        for revision in revisions:
            original = by_bucket[revision["bucket_end"]]
            assert (revision["revision"], revision["supersedes_cid"]) == (1, original["cid"])
            assert revision["restatement_reason"] == REASON and revision["methodology_version"] == "3.0.1"
            assert revision["syi_decimal"] != original["syi_decimal"]
        assert [r["prev_cid"] for r in revisions] == [originals[-1]["cid"], *(r["cid"] for r in revisions[:-1])]

        again = syi(*args)
        assert again.returncode == 0 and b"nothing to publish" in again.stdout, again.stdout.decode()
        assert len(values_since(provisioned, SYI_CALCULATED, since)) == len(records)

        # a request that no longer follows the bucket's latest revision (a stale copy) is refused
        stale = RestatementRequest(
            request_id=uuid.uuid4().hex, index_id="SYI", bucket_end=restated[0], supersedes_cid=by_bucket[restated[0]]["cid"],
            revision=1, reason=REASON, record=revisions[0], requested_at=now_text())
        producer = make_producer(provisioned)
        producer.produce(SYI_RESTATEMENTS, key=stale.key().encode(), value=dumps(stale))
        assert producer.flush(10) == 0
        letter = wait_for(lambda: [d for d in values_since(provisioned, f"{SYI_RESTATEMENTS}.dlq", since)
                                   if orjson.loads(d["raw_value"])["request_id"] == stale.request_id], 30,
                          "the stale request's dead letter")[0]
        assert letter["error"].startswith(f"restatement_stale: bucket {restated[0]} is at revision 1 "
                                          f"(cid {revisions[0]['cid']})")

        # restarted: nothing republished, and the next minutes follow the revisions in the chain
        syi_calc.stop()
        syi_calc.start()
        play_tape(tape, provisioned, start_ms=middle)
        announce_progress(provisioned, bucket_end_of(span.last_ms), final=True)
        final = wait_for(lambda: len(v := values_since(provisioned, SYI_CALCULATED, since)) >= len(batch.values) + 3
                         and v, 90, "the rest of the tape")
        assert "resumed" in syi_calc.log_tail(400)
    finally:
        ray.stop(), syi_calc.stop()

    assert final[:len(records)] == records, "what was published stands unchanged"
    rest, expected = final[len(records):], batch.values[len(originals):]
    assert [r["bucket_end"] for r in rest] == [v.bucket_end for v in expected]
    unchained = ("prev_cid", "cid")  # the batch's chain has no revisions in it
    for got, want in zip(rest, expected):
        assert {k: v for k, v in comparable(got).items() if k not in unchained} == {
            k: v for k, v in comparable(want).items() if k not in unchained}, got["bucket_end"]
    assert rest[0]["prev_cid"] == revisions[-1]["cid"]
    assert len({(r["bucket_end"], r["revision"]) for r in final}) == len(final)  # one record per (bucket, revision)
    assert assert_chain_verifies(provisioned, since, final[0]["prev_cid"]) == len(final)
