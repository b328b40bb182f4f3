"""One broker of a three-broker cluster SIGKILLed in the middle of a tape replay, then started again
(docs/operations.md, "Three brokers"). Topics have 3 copies and `min.insync.replicas=2`; the
producers use `acks=all` with idempotence. What must hold:

* every message the tape player got acknowledged (`play_tape` raises unless all were) is on its
  topic exactly as produced: per key, the same values in the same order, none missing, none twice;
* the index goes on through the kill: exactly one record per bucket, each equal (but its locator
  fields) to `syi compute` of the same tape, the chain unbroken; ray-calc's records too;
* the killed broker rejoins: a member again, in the ISR of every partition it holds.

The cluster is the suite's own, so the session broker stays up for the other tests."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from syi_cli.compute import ComputeResult, compute_tape
from syi_cli.tape import BadLine, play_tape, read_tape
from syi_shared.kafka import read_to_end
from syi_shared.methodology.params import load_methodology
from syi_shared.serde import dumps
from syi_shared.settings import ServiceSettings
from syi_shared.topics import RAW_INPUT_TOPICS, all_topics
from tests.faults.cluster import OwnCluster
from tests.faults.feed import now_ms
from tests.faults.pipeline import Pipeline, dead_letters_since
from tests.ray_calc.streams import comparable, make_tape, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(480)]

TAPE = "30m"
SPEED = 40.0  # 30 minutes of tape in 45 s: the kill lands in the middle of the replay
KILL_AFTER_S = 12.0  # after the replay started
DOWN_S = 10.0  # longer than the controllers take to fence it (broker.session.timeout.ms, 9 s)
SETTLE_S = 180.0  # after the replay: for the last buckets to close and reach the topic
REJOIN_S = 120.0
OUTPUTS = ["ray.calculated", "syi.calculated"]
TESTED = {"SYI_TOPIC_REPLICATION_FACTOR": "3", "SYI_TOPIC_MIN_INSYNC_REPLICAS": "2"}  # what this cluster gets


@dataclass
class Replay:
    """What the module's one run saw."""

    cluster: OwnCluster
    settings: ServiceSettings
    tape: Path
    batch: ComputeResult
    victim: int
    killed_at_s: float
    restarted_at_s: float
    played_s: float
    player_error: BaseException | None
    index: list[dict[str, Any]]
    rays: list[dict[str, Any]]
    letters: list[dict[str, Any]]
    exits: dict[str, int | None]
    logs: str


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    work = tmp_path_factory.mktemp("cluster")
    tape = make_tape(work / "tape.jsonl", TAPE)
    batch = compute_tape(tape, load_methodology())
    cluster = OwnCluster(work / "kafka").start()
    settings = cluster.provision()
    # the node leading the most partitions the replay writes: its death moves the most leaders
    led = cluster.leaders([*RAW_INPUT_TOPICS, *OUTPUTS])
    victim = max(led, key=lambda node: (led[node], node))
    since = now_ms()
    pipeline = Pipeline(settings, since, work)
    errors: list[BaseException] = []

    def player() -> None:
        try:
            # markers as it goes, as a real replay does (docs/streaming.md, "Progress markers"): a
            # partition stalled while its leader moves holds its buckets back instead of being idle
            play_tape(tape, settings, speed=SPEED, announce_progress=True)
        except BaseException as exc:  # noqa: BLE001 (judged by the test)
            errors.append(exc)

    try:
        pipeline.start()
        began = time.monotonic()
        thread = threading.Thread(target=player, name="tape-player", daemon=True)
        thread.start()
        time.sleep(KILL_AFTER_S)
        assert thread.is_alive(), "the replay ended before the kill: slow it down"
        cluster.kill(victim)
        killed_at = time.monotonic() - began
        time.sleep(DOWN_S)
        cluster.restart(victim)
        restarted_at = time.monotonic() - began
        thread.join(timeout=300)
        played = time.monotonic() - began
        expected = len(batch.values)
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            if len({r["bucket_end"] for r in values(settings, "syi.calculated")}) >= expected:
                break
            if any(code is not None for code in pipeline.alive().values()):
                break  # a calculator died: no use waiting
            time.sleep(2)
        time.sleep(3)  # a duplicate would come right behind the last record
        yield Replay(cluster, settings, tape, batch, victim, killed_at, restarted_at, played,
                     errors[0] if errors else None, values(settings, "syi.calculated"),
                     values(settings, "ray.calculated"), dead_letters_since(settings, since), pipeline.alive(),
                     pipeline.logs(60))
    finally:
        pipeline.stop()
        cluster.stop()


def values(settings: ServiceSettings, topic: str) -> list[dict[str, Any]]:
    """The topic's committed records in offset order (the cluster holds only this run's)."""
    return [orjson.loads(message.value()) for message in read_to_end([topic], settings, timeout=60)]


def test_every_topic_has_three_copies_two_in_sync(replay: Replay) -> None:
    admin = AdminClient(replay.settings.kafka_config())
    metadata = admin.list_topics(timeout=10)
    for topic in all_topics():
        copies = {len(p.replicas) for p in metadata.topics[topic.name].partitions.values()}
        assert copies == {int(TESTED["SYI_TOPIC_REPLICATION_FACTOR"])}, f"{topic.name}: {copies}"
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t.name) for t in all_topics()]
    for resource, future in admin.describe_configs(resources).items():
        assert future.result()["min.insync.replicas"].value == TESTED["SYI_TOPIC_MIN_INSYNC_REPLICAS"], resource.name


def test_the_production_overlay_provisions_topics_as_tested_here() -> None:
    from tests.ops.test_k8s import by_kind

    job = by_kind("prod", "Job")["syi-topics"]
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {name: env.get(name) for name in TESTED} == TESTED


def test_every_acknowledged_message_is_on_its_topic_exactly_once(replay: Replay) -> None:
    assert replay.killed_at_s < replay.played_s, "the broker was not killed during the replay"
    # play_tape raises unless Kafka acknowledged every message: no error = all of them acknowledged
    assert replay.player_error is None, f"the replay failed: {replay.player_error!r}"
    produced: dict[tuple[str, str], list[bytes]] = defaultdict(list)
    for item in read_tape(replay.tape):
        assert not isinstance(item, BadLine), item
        produced[(item.topic, item.key)].append(dumps(item.value))
    stored: dict[tuple[str, str], list[bytes]] = defaultdict(list)
    topics = sorted({topic for topic, _ in produced})
    for message in read_to_end(topics, replay.settings, timeout=60):
        stored[(message.topic(), message.key().decode())].append(message.value())
    for topic in topics:
        want = {key: v for key, v in produced.items() if key[0] == topic}
        got = {key: v for key, v in stored.items() if key[0] == topic}
        assert sum(map(len, got.values())) == sum(map(len, want.values())), f"{topic}: count differs"
        assert got == want, f"{topic}: values differ (per key, in order)"


def test_the_index_goes_on_once_per_bucket_equal_to_batch(replay: Replay) -> None:
    assert all(code is None for code in replay.exits.values()), f"a calculator exited:\n{replay.logs}"
    assert not replay.letters, f"inputs dead-lettered: {replay.letters[:3]}"
    want = [comparable(value.model_dump(mode="json")) for value in replay.batch.values]
    got = replay.index
    assert [r["bucket_end"] for r in got] == [r["bucket_end"] for r in want], \
        f"buckets differ (missing or duplicate minutes):\n{replay.logs}"
    rays = {(r["bucket_end"], r["symbol"]): comparable(r) for r in replay.rays}
    batch_rays = {(r.bucket_end, r.symbol): comparable(r) for bucket in replay.batch.ray_buckets for r in bucket.rays}
    assert len(replay.rays) == len(rays), "ray.calculated holds a (bucket, symbol) twice"
    assert rays.keys() == batch_rays.keys(), f"ray.calculated's (bucket, symbol)s: {rays.keys() ^ batch_rays.keys()}"
    differing = {key: fields(rays[key], batch_rays[key]) for key in sorted(rays) if rays[key] != batch_rays[key]}
    assert not differing, f"ray.calculated differs from the batch run: {differing}\n{replay.logs}"
    differing = {w["bucket_end"]: fields(g, w) for g, w in zip(map(comparable, got), want) if g != w}
    assert not differing, f"syi.calculated differs from the batch run: {differing}\n{replay.logs}"
    previous = None
    for record in got:  # one chain: each record links to the one before it on the topic
        assert record.get("prev_cid") == previous, f"chain broken at {record['bucket_end']}"
        previous = record["cid"]


def fields(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """The names of the fields two records disagree on."""
    return sorted(k for k in got.keys() | want.keys() if got.get(k) != want.get(k))


def test_the_killed_broker_rejoins(replay: Replay) -> None:
    wait_for(lambda: replay.cluster.in_sync(replay.victim), REJOIN_S,
             f"kafka-{replay.victim} back in the ISR of every partition it holds")
    assert replay.cluster.cluster.registered() == {1, 2, 3}
