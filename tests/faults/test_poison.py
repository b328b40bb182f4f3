"""Poison on the calculators' input topics while the live pipeline runs: a schema-valid T-bill
rate of 1e308 (a feed sending basis points would do it), and hostile messages on every topic
the calculators read (a 900 KB value, garbage bytes, a null key, numbers sent as strings).
Each is one dead letter with its reason; nothing crashes, and the next minutes are published
as if nothing had happened (docs/topics.md: plausibility bounds, dead letters)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError

from syi_shared.kafka import make_producer
from syi_shared.methodology.tbill import discount_to_apy
from syi_shared.settings import ServiceSettings
from tests.faults.feed import Delivery, LiveFeed, now_ms, produce_one
from tests.faults.hostile import DLQ_RAW_LIMIT, NUMBER_FIELD, Hostile, hostile_messages, valid
from tests.faults.pipeline import (
    CALCULATOR_INPUTS, Health, Pipeline, Published, dead_letters_since, probe, published_since,
)

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(420)]

FEED_TBILL_PCT = 4.12  # the rate the live feed's DTB3 carries (tools/make_demo_tape.py)
NEXT_BUCKETS = 2


@dataclass
class Poisoned:
    """What the module's one run saw: the poison's deliveries, then everything read back."""

    injected_ms: int
    tbill: Delivery
    hostile: list[tuple[Hostile, Delivery | KafkaError]]
    letters: list[dict[str, Any]]
    index: list[Published]
    rays: list[Published]
    exits: dict[str, int | None]
    health: dict[str, Health]
    logs: str

    def letters_for(self, delivery: Delivery) -> list[dict[str, Any]]:
        return [letter for letter in self.letters
                if (letter.get("source_topic"), letter.get("partition"), letter.get("offset"))
                == (delivery.topic, delivery.partition, delivery.offset)]

    def after(self) -> list[Published]:
        """Index records of the buckets that ended after the poison was produced."""
        return [record for record in self.index if record.bucket_ms > self.injected_ms]


@pytest.fixture(scope="module")
def poisoned(provisioned: ServiceSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Poisoned]:
    since = now_ms()
    feed = LiveFeed(provisioned).start()
    pipeline = Pipeline(provisioned, since, tmp_path_factory.mktemp("poison"))
    try:
        pipeline.start()
        time.sleep(3)  # the feed's first messages (the day's T-bill among them) are in
        injected = now_ms()
        producer = make_producer(provisioned)
        hostile = [(message, produce_one(provisioned, message.topic, message.key, message.value, producer))
                   for topic in CALCULATOR_INPUTS for message in hostile_messages(topic, injected)]
        # The T-bill last and stamped after the rest, so no other T-bill is newer: accepted, it
        # would be the rate the next minutes use.
        key, tbill = valid("trad.tbill", now_ms())
        tbill_delivery = produce_one(provisioned, "trad.tbill", key, orjson.dumps({**tbill, "rate_pct": 1e308}),
                                     producer)
        assert isinstance(tbill_delivery, Delivery), f"the broker refused the T-bill: {tbill_delivery}"

        def published_next() -> bool:
            if any(code is not None for code in pipeline.alive().values()):
                return True  # a calculator died: no point waiting, the tests say so
            index = published_since(provisioned, "syi.calculated", since)
            return sum(record.bucket_ms > injected for record in index) >= NEXT_BUCKETS

        deadline = time.monotonic() + 60 * (NEXT_BUCKETS + 1) + 10
        while not published_next() and time.monotonic() < deadline:
            time.sleep(2)
        yield Poisoned(
            injected_ms=injected, tbill=tbill_delivery, hostile=hostile,
            letters=dead_letters_since(provisioned, since),
            index=published_since(provisioned, "syi.calculated", since),
            rays=published_since(provisioned, "ray.calculated", since, foreign=frozenset(
                (outcome.partition, outcome.offset) for message, outcome in hostile
                if message.topic == "ray.calculated" and isinstance(outcome, Delivery))),
            exits=pipeline.alive(),
            health={c.module: probe(c) for c in pipeline.calculators},
            logs=pipeline.logs(),
        )
    finally:
        pipeline.stop()
        feed.stop()


def test_tbill_rate_1e308_is_one_out_of_range_dead_letter(poisoned: Poisoned) -> None:
    letters = poisoned.letters_for(poisoned.tbill)
    assert len(letters) == 1, f"dead letters for the 1e308 T-bill: {letters}"
    assert letters[0]["error"].startswith("out_of_range:"), letters[0]["error"]
    assert letters[0]["service"] == "syi-calc"


def test_tbill_rate_1e308_leaves_syi_calc_running_and_the_next_minutes_published(poisoned: Poisoned) -> None:
    assert poisoned.exits["syi_calc"] is None, f"syi-calc exited:\n{poisoned.logs}"
    assert poisoned.health["syi_calc"].http == 200, poisoned.health["syi_calc"]
    after = poisoned.after()
    assert len(after) >= NEXT_BUCKETS, f"{len(after)} index records after the poison:\n{poisoned.logs}"
    # The rate never reached the calculation: the index still prices the feed's 4.12 % bill.
    tbill_apy = pytest.approx(discount_to_apy(FEED_TBILL_PCT / 100), rel=1e-12)
    assert [record.value["tbill_apy_decimal"] for record in after] == [tbill_apy] * len(after)


def test_each_hostile_message_is_one_dead_letter_with_a_reason(poisoned: Poisoned) -> None:
    problems = []
    for message, outcome in poisoned.hostile:
        if isinstance(outcome, KafkaError):
            # Only a keyless record on a compacted topic may be refused by the broker itself;
            # then no consumer ever sees it.
            if not (message.kind == "null_key" and message.topic == "trad.tbill"):
                problems.append(f"{message}: refused by the broker ({outcome})")
            continue
        letters = poisoned.letters_for(outcome)
        if len(letters) != 1:
            problems.append(f"{message}: {len(letters)} dead letters")
            continue
        error = letters[0]["error"]
        if not error:
            problems.append(f"{message}: dead letter without a reason")
        if message.kind == "null_key" and "key" not in error:
            problems.append(f"{message}: reason does not name the key: {error!r}")
        if message.kind == "string_number" and NUMBER_FIELD[message.topic] not in error:
            problems.append(f"{message}: reason does not name {NUMBER_FIELD[message.topic]}: {error!r}")
    assert not problems, "\n".join(problems)


def test_the_dead_letter_of_a_900_kb_value_is_capped_and_fingerprinted(poisoned: Poisoned) -> None:
    problems = []
    for message, outcome in poisoned.hostile:
        if message.kind != "big" or not isinstance(outcome, Delivery):
            continue
        letters = poisoned.letters_for(outcome)
        if len(letters) != 1:
            problems.append(f"{message}: {len(letters)} dead letters")
            continue
        letter = letters[0]
        raw = letter["raw_value"].encode()
        if len(raw) > DLQ_RAW_LIMIT or not message.value.startswith(raw):
            problems.append(f"{message}: raw_value of {len(raw)} bytes is not the value's first 64 KiB at most")
        if letter.get("raw_length") != len(message.value):
            problems.append(f"{message}: raw_length {letter.get('raw_length')} != {len(message.value)}")
        if letter.get("raw_sha256") != hashlib.sha256(message.value).hexdigest():
            problems.append(f"{message}: raw_sha256 {letter.get('raw_sha256')} is not the value's")
    assert not problems, "\n".join(problems)


def test_hostile_messages_crash_nothing_and_the_next_buckets_are_published(poisoned: Poisoned) -> None:
    assert poisoned.exits == {"ray_calc": None, "syi_calc": None}, f"a calculator exited:\n{poisoned.logs}"
    for module, health in poisoned.health.items():
        assert (health.http, health.status) == (200, "ok"), f"{module}: {health}"
    after = poisoned.after()
    assert len(after) >= NEXT_BUCKETS, f"{len(after)} index records after the poison:\n{poisoned.logs}"
    ray_buckets = {record.bucket_ms for record in poisoned.rays}
    assert all(record.bucket_ms in ray_buckets for record in after)
