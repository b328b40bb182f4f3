"""Against the real broker: where a calculator without a checkpoint starts reading
(`start_positions`): the checkpoint's position, else the first offset at/after `since_ms`, else
the end — and never past a message appended while it looks."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer

from syi_shared.admin import provision_topics
from syi_shared.kafka import make_producer
from syi_shared.models import PriceTick
from syi_shared.streaming import restore
from syi_shared.streaming.restore import start_positions
from syi_shared.topics import DAY_MS, Topic

pytestmark = pytest.mark.integration


@pytest.fixture
def topic(kafka_settings) -> str:
    name = f"test.start-{uuid.uuid4().hex[:10]}"
    provision_topics(kafka_settings, [Topic(name, PriceTick, "{symbol}", 1, "delete", DAY_MS, ("test",), ("test",))])
    return name


def produce(settings, topic: str, *stamps_ms: int) -> None:
    producer = make_producer(settings)
    for stamp in stamps_ms:
        producer.produce(topic, key=b"k", value=b"{}", partition=0, timestamp=stamp)
    assert producer.flush(30) == 0


def test_the_first_offset_at_or_after_since(kafka_settings, topic):
    since = int(time.time() * 1000)
    produce(kafka_settings, topic, since - 2_000, since - 1_000, since, since + 1_000)
    assert start_positions(kafka_settings, [(topic, 0)], {}, since) == {(topic, 0): 2}


def test_the_end_when_nothing_is_that_recent(kafka_settings, topic):
    since = int(time.time() * 1000)
    produce(kafka_settings, topic, since - 2_000, since - 1_000)
    assert start_positions(kafka_settings, [(topic, 0)], {}, since) == {(topic, 0): 2}


def test_the_checkpoint_position_wins(kafka_settings, topic):
    since = int(time.time() * 1000)
    produce(kafka_settings, topic, since - 1_000, since, since + 1_000)
    assert start_positions(kafka_settings, [(topic, 0)], {topic: {"0": 1}}, since) == {(topic, 0): 1}
    assert start_positions(kafka_settings, [(topic, 0)], {}, None) == {(topic, 0): 0}


class AppendsAfterLookup:
    """The real consumer, with a message appended right after its time lookup answered: the
    moment a tape player (or an ingester) starts producing while a calculator starts up."""

    def __init__(self, consumer: Consumer, append: Any) -> None:
        self._consumer = consumer
        self._append = append

    def offsets_for_times(self, *args: Any, **kwargs: Any) -> Any:
        found = self._consumer.offsets_for_times(*args, **kwargs)
        self._append()
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


def test_a_message_appended_during_the_lookup_is_read_not_skipped(kafka_settings, topic, monkeypatch):
    since = int(time.time() * 1000)
    real_reader = restore.reader
    monkeypatch.setattr(restore, "reader", lambda settings, **overrides: AppendsAfterLookup(
        real_reader(settings, **overrides), lambda: produce(kafka_settings, topic, since + 500)))

    # The partition is empty when looked up, holds one message right after: start before it.
    assert start_positions(kafka_settings, [(topic, 0)], {}, since) == {(topic, 0): 0}
