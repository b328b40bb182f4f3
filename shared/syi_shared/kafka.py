"""confluent-kafka factories: idempotent producers (acks=all), consumers with explicit commits."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer

from syi_shared.settings import ServiceSettings

PRODUCER_DEFAULTS = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "compression.type": "lz4",
}

CONSUMER_DEFAULTS = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
}


def base_config(settings: ServiceSettings | None = None) -> dict[str, Any]:
    return (settings or ServiceSettings()).kafka_config()


def make_producer(settings: ServiceSettings | None = None, **overrides: Any) -> Producer:
    config = {**base_config(settings), **PRODUCER_DEFAULTS, **overrides}
    return Producer(config)


def make_consumer(group_id: str, settings: ServiceSettings | None = None, **overrides: Any) -> Consumer:
    """A group consumer: offsets are stored with `store_offsets(msg)` and committed explicitly."""
    config = {**base_config(settings), **CONSUMER_DEFAULTS, "group.id": group_id, **overrides}
    return Consumer(config)
