"""A live feed for the fault tests: the demo-tape generator's realistic streams (cc.prices,
cc.orderbook, dl.apy, ex.mktcap, trad.tbill for the methodology's symbols), started now, each
message produced when the wall clock reaches its ingest time. It stands in for the ingesters
where a case is about the calculators; pausing it is an ingester killed (what it would have
sent meanwhile is lost, as with a dead process)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import KafkaError, Producer

from syi_shared.kafka import make_producer
from syi_shared.settings import ServiceSettings
from syi_shared.timefmt import millis, time_text
from tests.conftest import load_generator

MINUTE = 60_000


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Delivery:
    """Where the broker put one message, and when it acknowledged it (wall clock, ms)."""

    topic: str
    partition: int
    offset: int
    event_ms: int | None
    acked_ms: int


@dataclass(frozen=True)
class Scheduled:
    at_ms: int  # produce when the wall clock reaches this (the message's ingest time)
    topic: str
    key: bytes
    value: bytes
    event_ms: int


class LiveFeed:
    """Produces the generated streams in wall-clock time on a background thread."""

    def __init__(self, settings: ServiceSettings, duration_ms: int = 30 * MINUTE) -> None:
        generator = load_generator()
        self.start_ms = now_ms()
        lines = generator.generate(duration_ms, generator.DEFAULT_SEED, time_text(self.start_ms))
        self.schedule = [self._scheduled(orjson.loads(line)) for line in lines]
        self.schedule.sort(key=lambda item: item.at_ms)
        self.producer = make_producer(settings)
        self.deliveries: list[Delivery] = []
        self.failures: list[str] = []
        self.dropped = 0  # messages not sent while paused
        self._paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-feed", daemon=True)

    @staticmethod
    def _scheduled(line: dict[str, Any]) -> Scheduled:
        value = line["value"]
        return Scheduled(millis(value["ingest_time"]), line["topic"], line["key"].encode(), orjson.dumps(value),
                         millis(value["event_time"]))

    def start(self) -> LiveFeed:
        self._thread.start()
        return self

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set() and index < len(self.schedule):
            now = now_ms()
            while index < len(self.schedule) and self.schedule[index].at_ms <= now:
                item = self.schedule[index]
                index += 1
                if self._paused.is_set():
                    self.dropped += 1
                    continue
                self.producer.produce(item.topic, key=item.key, value=item.value,
                                      on_delivery=self._on_delivery(item.event_ms))
            self.producer.poll(0.05)  # delivery reports, and the loop's pace
        self.producer.flush(60)

    def _on_delivery(self, event_ms: int | None):  # noqa: ANN202 (librdkafka's callback shape)
        def delivered(error: KafkaError | None, message: Any) -> None:
            if error is not None:
                self.failures.append(f"{message.topic()}: {error}")
                return
            self.deliveries.append(Delivery(message.topic(), message.partition(), message.offset(), event_ms, now_ms()))

        return delivered


def produce_one(settings: ServiceSettings, topic: str, key: bytes | None, value: bytes | None,
                producer: Producer | None = None) -> Delivery | KafkaError:
    """One message, flushed: where it landed, or the broker's refusal."""
    producer = producer or make_producer(settings)
    outcome: list[Delivery | KafkaError] = []

    def delivered(error: KafkaError | None, message: Any) -> None:
        outcome.append(error if error is not None else
                       Delivery(message.topic(), message.partition(), message.offset(), None, now_ms()))

    producer.produce(topic, key=key, value=value, on_delivery=delivered)
    producer.flush(60)
    assert outcome, f"no delivery report for a message to {topic} within 60 s"
    return outcome[0]
