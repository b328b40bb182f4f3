"""Whether a service can reach Kafka right now, as its own clients see it.

Two signals feed one `BrokerWatch`: librdkafka's `error_cb` of the service's clients (a
disconnect or "all brokers down" is known at once) and a metadata probe on a daemon thread
(every `interval` s: a successful answer means the cluster is back, and it lists partitions
without a leader). Time is passed in, so tests drive it with their own clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from syi_shared.logs import get_logger

# Errors that mean "cannot talk to the cluster" (not a problem with one request).
_UNREACHABLE = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE, KafkaError._TIMED_OUT}


class BrokerWatch:
    """`reachable(now)` for decisions that must react at once (the calculators' clock);
    `reasons(now)` for health, which reports an outage once it has lasted `grace_s`."""

    def __init__(self, topics: Iterable[str] = (), grace_s: float = 15.0) -> None:
        self.topics = tuple(topics)
        self.grace_s = grace_s
        self.down_since: float | None = None
        self.leaderless_since: dict[tuple[str, int], float] = {}
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    # --- signals

    def on_error(self, error: KafkaError, now: float | None = None) -> None:
        """librdkafka's `error_cb` (set it with `client_config()`)."""
        if error.code() not in _UNREACHABLE:
            return
        now = time.time() if now is None else now
        with self._lock:
            self.last_error = error.str()
            if self.down_since is None:
                self.down_since = now

    def probed(self, partitions: dict[tuple[str, int], int] | None, now: float, error: str | None = None) -> None:
        """The outcome of one metadata probe: partition -> leader id (-1: none), or None when
        the cluster did not answer."""
        with self._lock:
            if partitions is None:
                self.last_error = error or self.last_error
                if self.down_since is None:
                    self.down_since = now
                return
            self.down_since = None
            for place, leader in partitions.items():
                if leader < 0:
                    self.leaderless_since.setdefault(place, now)
                else:
                    self.leaderless_since.pop(place, None)

    # --- views

    def reachable(self, now: float) -> bool:
        with self._lock:
            return self.down_since is None

    def reasons(self, now: float) -> list[str]:
        with self._lock:
            reasons = []
            if self.down_since is not None and now - self.down_since >= self.grace_s:
                reasons.append(f"kafka: no broker reachable for {now - self.down_since:.0f} s ({self.last_error})")
            for (topic, partition), since in sorted(self.leaderless_since.items()):
                if now - since >= self.grace_s:
                    reasons.append(f"kafka: {topic}/{partition} has had no leader for {now - since:.0f} s")
            return reasons

    def state(self, now: float) -> str:
        """`reachable` or `down` (the latter only once the outage is older than the grace)."""
        with self._lock:
            down = self.down_since is not None and now - self.down_since >= self.grace_s
        return "down" if down else "reachable"

    def client_config(self) -> dict[str, Any]:
        """Merge into a confluent-kafka client's config: its errors feed this watch."""
        return {"error_cb": self.on_error}

    # --- the probe

    def start_probe(self, kafka_config: dict[str, Any], interval: float = 2.0) -> threading.Thread:
        """Probe the cluster's metadata every `interval` s on a daemon thread."""
        admin = AdminClient({**kafka_config, **self.client_config()})
        thread = threading.Thread(target=self._probe_loop, args=(admin, interval), name="broker-probe", daemon=True)
        thread.start()
        return thread

    def stop_probe(self) -> None:
        self._stopped.set()

    def _probe_loop(self, admin: AdminClient, interval: float) -> None:
        log = get_logger()
        was_reachable = True
        while not self._stopped.is_set():
            started = time.time()
            self.probe_once(admin.list_topics, timeout=max(1.0, interval))
            now_reachable = self.reachable(time.time())
            if now_reachable != was_reachable:
                log.warning("broker_reachable" if now_reachable else "broker_unreachable", error=self.last_error)
                was_reachable = now_reachable
            self._stopped.wait(max(0.0, interval - (time.time() - started)))

    def probe_once(self, list_topics: Callable[..., Any], timeout: float) -> None:
        try:
            metadata = list_topics(timeout=timeout)
        except KafkaException as exc:
            self.probed(None, time.time(), error=str(exc.args[0]) if exc.args else str(exc))
            return
        if not metadata.brokers:
            self.probed(None, time.time(), error="metadata lists no broker")
            return
        partitions = {
            (name, partition_id): partition.leader
            for name in self.topics
            if (topic := metadata.topics.get(name)) is not None and topic.error is None
            for partition_id, partition in topic.partitions.items()
        }
        self.probed(partitions, time.time())
