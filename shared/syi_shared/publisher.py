"""Publishing topic values: validate, serialise once, produce under the registry's key, and count
a value as delivered only when Kafka acknowledged it (docs/ingestion.md, "Delivery").

Producers validate before sending (docs/architecture.md, "Errors and delivery"): a value that is not its topic's
model is a programming error and raises here, before it reaches Kafka.

Every value handed over ends in exactly one of: delivered (acknowledged), conflated (a newer value
of the same topic and key replaced it before it was delivered), rejected (Kafka refused it for good:
counted, logged, shown on /healthz until a newer value of its key is delivered) or still pending
(in the producer or in the backlog). Nothing is dropped:

* a full producer queue (`BufferError`) puts the value in the **backlog**, which keeps only the
  newest value per (topic, key), so it is bounded by the service's keys (pairs, pools, series);
* a failed delivery (e.g. `message.timeout.ms` expired while no broker answered) goes back to the
  backlog unless a newer value of its key was handed over since; it is produced again after a
  short backoff, once the service's `BrokerWatch` says a broker answers again (so an outage does
  not churn the same value through the producer);
* the backlog drains into the producer, oldest first, on every publish and pump; while it is not
  empty `backlogged` is true, `room()` waits, and `check()` says degraded: the ingesters await
  room before they poll their sources again.

The callbacks run in whichever thread serves the producer (`poll`, `flush`), hence the lock.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Producer
from pydantic import BaseModel

from syi_shared import metric_names, serde
from syi_shared.backoff import backoff_s
from syi_shared.broker_watch import BrokerWatch
from syi_shared.health import HealthReport
from syi_shared.kafka import make_producer
from syi_shared.logs import get_logger
from syi_shared.metrics import counter, gauge
from syi_shared.settings import ServiceSettings
from syi_shared.topics import topic as lookup_topic

# Refusals that no retry can change: the value itself is wrong for Kafka (too large, malformed).
PERMANENT = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE, KafkaError.INVALID_MSG,
             KafkaError.INVALID_RECORD, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError._INVALID_ARG,
             KafkaError._BAD_MSG}
RETRY_INITIAL_S = 0.5  # a failed delivery's first retry; doubles up to RETRY_MAX_S
RETRY_MAX_S = 30.0

PUBLISHED = counter(metric_names.MESSAGES_PUBLISHED, "Messages produced, by topic", labels=("service", "topic"))
DELIVERED = counter(metric_names.MESSAGES_DELIVERED, "Values Kafka acknowledged", labels=("service", "topic"))
FAILURES = counter(metric_names.DELIVERY_FAILURES, "Failed deliveries (each retried unless rejected for good)",
                   labels=("service", "topic", "kind"))
CONFLATED = counter(metric_names.MESSAGES_CONFLATED, "Values replaced by a newer one of their key before delivery",
                    labels=("service", "topic"))
BACKLOGGED = counter(metric_names.MESSAGES_BACKLOGGED, "Values that found the producer full and waited (backpressure)",
                     labels=("service", "topic"))
BACKLOG = gauge(metric_names.PUBLISH_BACKLOG, "Values waiting for room in the producer (newest per key)",
                labels=("service",))

State = Literal["pending", "delivered", "conflated", "rejected"]


@dataclass(eq=False)
class Delivery:
    """What became of one published value; `state` changes from the producer's callbacks."""

    topic: str
    key: bytes
    state: State = "pending"
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.state != "pending"


@dataclass(eq=False)
class _Entry:
    value: bytes
    seq: int
    delivery: Delivery
    produce_args: dict[str, Any] = field(default_factory=dict)
    failures: int = 0
    retry_at: float = 0.0  # monotonic; only failed deliveries wait


class Publisher:
    def __init__(
        self,
        service: str,
        settings: ServiceSettings | None = None,
        producer: Producer | None = None,
        watch: BrokerWatch | None = None,
    ) -> None:
        self.service = service
        self.producer = producer or make_producer(settings, watch=watch)
        self.watch = watch  # failed deliveries wait until it says a broker answers
        self.log = get_logger(component="publisher")
        self._lock = threading.RLock()
        self._backlog: OrderedDict[tuple[str, bytes], _Entry] = OrderedDict()
        self._newest: dict[tuple[str, bytes], int] = {}  # per key: seq of the newest value handed over
        self._seq = 0
        self.rejected: dict[tuple[str, bytes], str] = {}  # until a newer value of the key is delivered
        self.counts: dict[str, int] = dict.fromkeys(("published", "backlogged", "delivered", "failed", "conflated",
                                                      "rejected"), 0)
        BACKLOG.labels(service).set(0)

    # ------------------------------------------------------------------ publishing

    def publish(self, topic_name: str, value: BaseModel, key: str | None = None, **produce_args: Any) -> Delivery:
        """Hand one value over; never drops it (see the module docstring). Returns its Delivery."""
        model = lookup_topic(topic_name).model
        if not isinstance(value, model):
            raise TypeError(f"{topic_name} takes {model.__name__}, got {type(value).__name__}")
        raw_key = (key if key is not None else value.key()).encode()  # type: ignore[attr-defined]
        place = (topic_name, raw_key)
        with self._lock:
            self._seq += 1
            entry = _Entry(serde.dumps(value), self._seq, Delivery(topic_name, raw_key), produce_args)
            self._newest[place] = entry.seq
            self.counts["published"] += 1
            self._drain()
            # while older values wait, a new one waits behind them (a key's order is kept)
            if self._backlog or not self._produce(place, entry):
                self._keep(place, entry)
                self.counts["backlogged"] += 1
                BACKLOGGED.labels(self.service, topic_name).inc()
            self._show_backlog()
        PUBLISHED.labels(self.service, topic_name).inc()
        self.producer.poll(0)
        return entry.delivery

    @property
    def backlogged(self) -> int:
        """How many values wait for room in the producer (0: the source may go on)."""
        return len(self._backlog)

    def pump(self) -> None:
        """Serve delivery reports and move what the backlog holds into the producer as room appears."""
        self.producer.poll(0)
        with self._lock:
            self._drain()
            self._show_backlog()

    async def pumping(self, every_s: float = 0.1, each_round: Callable[[], None] | None = None) -> None:
        """The background task that keeps delivery reports and the backlog moving; `each_round`
        tells the service's supervisor that it progressed."""
        while True:
            self.pump()
            if each_round is not None:
                each_round()
            await asyncio.sleep(every_s)

    async def room(self, every_s: float = 0.1) -> None:
        """Return once the backlog is empty: a source awaits this before it reads or polls more."""
        while True:
            self.pump()
            if not self._backlog:
                return
            await asyncio.sleep(every_s)

    async def settled(self, delivery: Delivery, every_s: float = 0.05) -> bool:
        """Wait until `delivery` is done (through retries); True when Kafka acknowledged it."""
        while not delivery.done:
            self.pump()
            if delivery.done:
                break
            await asyncio.sleep(every_s)
        return delivery.state == "delivered"

    def flush(self, timeout: float = 10.0) -> int:
        """Deliver what is queued and backlogged (blocking); returns how many values are still pending."""
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            left = self.producer.flush(max(0.0, min(0.5, deadline - time.monotonic())))
            with self._lock:
                pending = left + len(self._backlog)
            if pending == 0 or time.monotonic() >= deadline:
                return pending

    # ------------------------------------------------------------------ health

    def check(self) -> HealthReport:
        """Degraded while values wait (the source is paused) or a rejected value was not yet replaced."""
        with self._lock:
            waiting = len(self._backlog)
            rejected = dict(self.rejected)
        reasons = []
        if waiting:
            reasons.append(f"publisher: {waiting} value(s) wait for room in the producer (Kafka slow or "
                           "unreachable); sources paused, the newest value per key kept")
        if rejected:
            (topic_name, key), error = next(reversed(rejected.items()))
            reasons.append(f"publisher: {len(rejected)} value(s) rejected by Kafka, last {topic_name} "
                           f"{key.decode(errors='replace')}: {error} (each clears when a newer value of its key "
                           "is delivered)")
        detail = {"backlog": waiting, "in_flight": len(self.producer), "rejected": len(rejected)}
        return HealthReport(status="degraded" if reasons else "ok", reasons=reasons, publisher=detail)

    # ------------------------------------------------------------------ inside (under the lock)

    def _produce(self, place: tuple[str, bytes], entry: _Entry) -> bool:
        def report(error: KafkaError | None, _message: Any) -> None:
            self._on_delivery(place, entry, error)

        try:
            self.producer.produce(place[0], key=place[1], value=entry.value, on_delivery=report, **entry.produce_args)
        except BufferError:
            return False
        except KafkaException as exc:  # refused before queueing (e.g. too large): a failed delivery, reported now
            self._on_delivery(place, entry, exc.args[0])
        return True

    def _keep(self, place: tuple[str, bytes], entry: _Entry) -> None:
        older = self._backlog.pop(place, None)
        if older is not None:
            self._conflate(place, older)
        self._backlog[place] = entry

    def _conflate(self, place: tuple[str, bytes], entry: _Entry) -> None:
        entry.delivery.state = "conflated"
        self.counts["conflated"] += 1
        CONFLATED.labels(self.service, place[0]).inc()

    def _drain(self) -> None:
        if not self._backlog:
            return
        now = time.monotonic()
        broker_up = self.watch is None or self.watch.reachable(time.time())
        for place, entry in list(self._backlog.items()):
            if entry.failures and (now < entry.retry_at or not broker_up):
                continue  # a failed delivery waits for its retry time and a broker
            del self._backlog[place]  # before producing: a refusal may put it back at once
            if not self._produce(place, entry):
                self._backlog[place] = entry
                return  # still full: the rest waits for the next pump

    def _show_backlog(self) -> None:
        BACKLOG.labels(self.service).set(len(self._backlog))

    def _on_delivery(self, place: tuple[str, bytes], entry: _Entry, error: KafkaError | None) -> None:
        topic_name = place[0]
        with self._lock:
            if error is None:
                entry.delivery.state = "delivered"
                self.counts["delivered"] += 1
                DELIVERED.labels(self.service, topic_name).inc()
                if self._newest.get(place) == entry.seq:
                    self.rejected.pop(place, None)  # the key's newest value is in Kafka: nothing missing
                return
            entry.failures += 1
            entry.delivery.error = error.str()
            self.counts["failed"] += 1
            FAILURES.labels(self.service, topic_name, error.name()).inc()
            if error.code() in PERMANENT:
                entry.delivery.state = "rejected"
                self.counts["rejected"] += 1
                self.rejected[place] = error.str()
                self.log.error("delivery_rejected", topic=topic_name, key=place[1].decode(errors="replace"),
                               error=error.str(), bytes=len(entry.value))
                return
            if self._newest.get(place) != entry.seq:
                self._conflate(place, entry)  # a newer value of the key is on its way: it replaces this one
                self.log.warning("delivery_failed", topic=topic_name, error=error.str(), retry="superseded")
                return
            entry.retry_at = time.monotonic() + backoff_s(entry.failures - 1, RETRY_INITIAL_S, RETRY_MAX_S)
            self._backlog[place] = entry
            self._show_backlog()
            self.log.warning("delivery_failed", topic=topic_name, error=error.str(), retry="backlog",
                             failures=entry.failures)
