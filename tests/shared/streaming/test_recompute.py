"""`syi verify --recompute`: every record re-derived from syi-calc's checkpoint and the input
topics equals what was published; a tampered input and a tampered record are both found."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from syi_cli.compute import compute_tape
from syi_shared.kafka import make_producer
from syi_shared.methodology.audit import record_cid_of
from syi_shared.methodology.params import load_methodology
from syi_shared.models import RayRecord
from syi_shared.settings import ServiceSettings
from syi_shared.streaming.recompute import recompute_index
from syi_shared.streaming.step import Arrival
from syi_shared.timefmt import millis
from tests.cli.conftest import syi
from tests.ray_calc.streams import Calculator, make_tape, play, values_since, wait_for
from tests.syi_calc.test_parity import now_ms

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture(scope="module")
def published_run(provisioned: ServiceSettings, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, list[dict]]:
    """A 30-minute tape through ray-calc and syi-calc: (since, syi-calc's instance, its records)."""
    tmp_path = tmp_path_factory.mktemp("recompute")
    tape = make_tape(tmp_path / "tape.jsonl", "30m")
    want = len(compute_tape(tape, load_methodology()).values)
    since = now_ms()
    ray = Calculator("ray_calc", provisioned, since, tmp_path).start()
    index = Calculator("syi_calc", provisioned, since, tmp_path).start()
    try:
        play(tape, provisioned)
        records = wait_for(lambda: len(v := values_since(provisioned, "syi.calculated", since)) >= want and v,
                           120, f"{want} index records")
    finally:
        ray.stop(), index.stop()
    return since, index.instance, records


def test_every_record_equals_its_recomputation(provisioned: ServiceSettings, published_run) -> None:
    since, instance, records = published_run
    report = recompute_index(provisioned, load_methodology(), instance=instance, since_ms=since)
    assert report.difference is None
    assert report.checked == len(records)  # the first bucket too: a run's first snapshot precedes its close
    assert (report.first_bucket, report.last_bucket) == (records[0]["bucket_end"], records[-1]["bucket_end"])


def test_a_tampered_input_is_reported_at_the_first_bucket_it_feeds(provisioned: ServiceSettings, published_run) -> None:
    since, instance, records = published_run
    middle = records[len(records) // 2]["bucket_end"]

    def tamper(item):  # one constituent's RAY, from the middle bucket on, as if the topic had been edited
        value = item.value if isinstance(item, Arrival) else None
        if isinstance(value, RayRecord) and value.symbol == "USDT" and value.bucket_end >= middle and value.ray_decimal:
            return dataclasses.replace(item, value=value.model_copy(update={"ray_decimal": value.ray_decimal * 1.01}))
        return item

    report = recompute_index(provisioned, load_methodology(), instance=instance, since_ms=since, transform=tamper)
    assert report.difference is not None
    assert (report.difference.bucket_end, report.difference.what) == (middle, "input_cid")


def test_a_tampered_record_is_reported(provisioned: ServiceSettings, published_run) -> None:
    """A forged record (new value, its cid recomputed to match) on a copy of the topic."""
    since, instance, records = published_run
    topic = f"test.syi.recompute.{now_ms()}"
    admin = AdminClient(provisioned.kafka_config())
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=60)
    forged_at = len(records) // 3
    producer = make_producer(provisioned)
    for number, record in enumerate(records):
        if number == forged_at:
            record = {**record, "syi_decimal": record["syi_decimal"] + 0.0001}
            record["cid"] = record_cid_of(record)
        producer.produce(topic, key=b"SYI", value=orjson.dumps(record))
    assert producer.flush(60) == 0

    report = recompute_index(provisioned, load_methodology(), instance=instance, topic=topic, since_ms=since)
    assert report.difference is not None and report.checked == forged_at + 1
    assert (report.difference.bucket_end, report.difference.what) == (records[forged_at]["bucket_end"], "values")
    assert "syi_decimal" in report.difference.detail


def test_the_command_recomputes_a_range(provisioned: ServiceSettings, published_run) -> None:
    since, instance, records = published_run
    first, last = records[5]["bucket_end"], records[-3]["bucket_end"]
    done = syi("verify", "--topic", "syi.calculated", "--recompute", "--instance", instance, "--since-ms", str(since),
               "--from", first, "--to", last, "--bootstrap", provisioned.kafka_config()["bootstrap.servers"])
    assert done.returncode == 0, done.stdout.decode() + done.stderr
    checked = sum(1 for record in records if millis(first) <= millis(record["bucket_end"]) <= millis(last))
    assert f"recomputed: {checked} records equal their recomputation".encode() in done.stdout


def test_the_command_says_why_it_cannot_recompute(provisioned: ServiceSettings, published_run, tmp_path: Path) -> None:
    since, _, _ = published_run
    done = syi("verify", "--topic", "syi.calculated", "--recompute", "--instance", "nobody", "--since-ms", str(since),
               "--bootstrap", provisioned.kafka_config()["bootstrap.servers"])
    assert done.returncode == 1 and b"cannot recompute" in done.stdout and b"no checkpoint of nobody" in done.stdout
