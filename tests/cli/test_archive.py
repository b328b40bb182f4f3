"""`syi tape record --from-archive`: a tape played through Kafka into store-clickhouse (a process
of its own, on its own chDB path), then rebuilt from the archive, is the same tape, and computes
to the same index.

This test process never opens the chDB path: the service owns it while it runs, then the `syi`
command reads it (a chDB path belongs to one process at a time).
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from syi_cli.tape import play_tape
from syi_shared.kafka import base_config
from syi_shared.settings import ServiceSettings
from syi_shared.timefmt import millis
from syi_shared.topics import RAW_INPUT_TOPICS
from tests.cli.conftest import DEMO_TAPE, syi
from tests.conftest import free_port
from tests.store_clickhouse.kafka_progress import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PLAYED_UNTIL = "2026-11-20T00:25:00.000Z"  # the demo tape's first 25 minutes go through Kafka ...
FROM, TO = "2026-11-20T00:00:00.250Z", "2026-11-20T00:20:00Z"  # ... and 20 come back (the first message's time)

# The order a rebuilt tape gives messages of one event time: topic, then the table's natural key.
TOPIC_RANK = {name: rank for rank, name in enumerate(RAW_INPUT_TOPICS)}
NATURAL_KEY = {"cc.prices": ("symbol", "venue"), "cc.orderbook": ("symbol", "venue"), "dl.apy": ("pool",),
               "ex.mktcap": ("symbol",), "trad.tbill": ("series", "observation_date")}


def tape_order(line: bytes) -> tuple:
    item = orjson.loads(line)
    value = item["value"]
    return (millis(value["event_time"]), TOPIC_RANK[item["topic"]],
            tuple(value[name] for name in NATURAL_KEY[item["topic"]]))


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def start_at_the_end(settings: ServiceSettings, group: str) -> None:
    """Commit `group` at the end of the raw-input topics: the service stores only what is played next
    (other tests' messages stay out of this test's archive)."""
    consumer = Consumer({**base_config(settings), "group.id": group, "enable.auto.commit": False})
    deadline = time.monotonic() + 60
    try:
        while True:
            try:  # a fresh broker answers "not leader" for a while: ask again
                metadata = consumer.list_topics(timeout=30)
                ends = [TopicPartition(name, partition, consumer.get_watermark_offsets(
                            TopicPartition(name, partition), timeout=30)[1])
                        for name in RAW_INPUT_TOPICS for partition in metadata.topics[name].partitions]
                consumer.commit(offsets=ends, asynchronous=False)
                return
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()


def test_a_tape_rebuilt_from_the_archive_is_the_tape_played_and_computes_the_same(
    provisioned: ServiceSettings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    with gzip.open(DEMO_TAPE) as handle:
        demo = [line.rstrip(b"\n") for line in handle
                if orjson.loads(line)["value"]["event_time"] < PLAYED_UNTIL]
    # Played in the rebuilt tape's order, so the rebuilt tape is this one line for line (the demo
    # tape's own order of messages of one event time is its generator's, which no archive knows).
    played = sorted(demo, key=tape_order)
    tape = tmp_path / "played.jsonl"
    tape.write_bytes(b"\n".join(played) + b"\n")

    group, port, dsn = f"archive-{uuid.uuid4().hex[:8]}", free_port(), f"chdb://{tmp_path / 'chdb'}"
    start_at_the_end(provisioned, group)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYI_")}
    log = (tmp_path / "service.log").open("wb")
    service = subprocess.Popen(
        [sys.executable, "-m", "store_clickhouse"],
        env={**env, "SYI_LOG_FORMAT": "json", "SYI_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
             "SYI_CLICKHOUSE_DSN": dsn, "SYI_HEALTH_PORT": str(port), "SYI_CLICKHOUSE_CONSUMER_GROUP": group,
             "SYI_CLICKHOUSE_TOPICS": orjson.dumps(list(RAW_INPUT_TOPICS)).decode()},
        stdout=log, stderr=subprocess.STDOUT,
    )
    rebuilt = tmp_path / "rebuilt.jsonl.gz"
    record = ("tape", "record", "--from-archive", "--from", FROM, "--to", TO, "--out", str(rebuilt),
              "--clickhouse-dsn", dsn)
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 90, "/readyz to answer 200")
        assert play_tape(tape, provisioned).produced == len(played)
        wait_for(lambda: orjson.loads(get(f"http://127.0.0.1:{port}/healthz")[1])["consumed"] >= len(played),
                 90, "every message consumed")
        busy = syi(*record)  # the service owns its chDB store while it runs: the command says so
        assert busy.returncode == 1 and "stop it first" in busy.stderr, busy.stderr
        service.send_signal(signal.SIGTERM)  # writes the pending batch and commits
        assert service.wait(timeout=60) == 0
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
        log.close()

    done = syi(*record)
    assert done.returncode == 0, done.stderr
    expected = [line for line in played if millis(FROM) <= tape_order(line)[0] < millis(TO)]
    assert {orjson.loads(line)["topic"] for line in expected} == set(RAW_INPUT_TOPICS)  # every table
    with gzip.open(rebuilt) as handle:
        assert handle.read() == b"\n".join(expected) + b"\n"  # same messages, same bytes, same order
    assert f"recorded {len(expected)} messages" in done.stderr

    # --warm-up for minutes from 00:10 on: the tape begins 30 days (σ) and 7 (a T-bill's freshness)
    # earlier, at 00:00 UTC: here that is everything the archive holds before --to.
    warmed = tmp_path / "warmed.jsonl.gz"
    with_warm_up = syi("tape", "record", "--from-archive", "--warm-up", "--from", "2026-11-20T00:10:00Z", "--to", TO,
                       "--out", str(warmed), "--clickhouse-dsn", dsn)
    assert with_warm_up.returncode == 0, with_warm_up.stderr
    assert "with its warm-up: from 2026-10-14T00:00:00.000Z (methodology 3.0.0)" in with_warm_up.stderr
    with gzip.open(warmed) as handle:
        assert handle.read() == b"\n".join(expected) + b"\n"

    # The index computed from the archive is the index computed from the tape as the generator
    # wrote it (its own order of messages of one event time).
    original = tmp_path / "original.jsonl"
    original.write_bytes(b"".join(line + b"\n" for line in demo if millis(FROM) <= tape_order(line)[0] < millis(TO)))
    from_archive, from_tape = syi("compute", "--tape", str(rebuilt)), syi("compute", "--tape", str(original))
    assert from_archive.returncode == 0 and from_tape.returncode == 0, from_archive.stderr + from_tape.stderr
    assert len(from_tape.stdout.splitlines()) >= 15
    assert from_archive.stdout == from_tape.stdout


def test_from_archive_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    out = str(tmp_path / "t.jsonl")
    missing = syi("tape", "record", "--from-archive", "--from", FROM, "--out", out)
    assert missing.returncode == 2 and "--from and --to" in missing.stderr
    nowhere = syi("tape", "record", "--from-archive", "--from", FROM, "--to", TO, "--out", out,
                  "--clickhouse-dsn", f"chdb://{tmp_path / 'none'}")
    assert nowhere.returncode == 1 and "no chDB store" in nowhere.stderr
    not_input = syi("tape", "record", "--from-archive", "--topics", "syi.calculated", "--from", FROM, "--to", TO,
                    "--out", out, "--clickhouse-dsn", f"chdb://{tmp_path}")
    assert not_input.returncode == 1 and "not archived as raw inputs" in not_input.stderr
    kafka_only = syi("tape", "record", "--topics", "cc.prices", "--from", FROM, "--out", out)
    assert kafka_only.returncode == 2 and "only with --from-archive" in kafka_only.stderr
    warm_up_only = syi("tape", "record", "--topics", "cc.prices", "--warm-up", "--out", out)
    assert warm_up_only.returncode == 2 and "only with --from-archive" in warm_up_only.stderr
