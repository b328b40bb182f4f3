"""Publishing topic values: validate, serialise once, produce under the registry's key.

Producers validate before sending (docs/architecture.md, "Errors and delivery"): a value that is not its topic's
model is a programming error and raises here, before it reaches Kafka.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer
from pydantic import BaseModel

from syi_shared import metric_names, serde
from syi_shared.kafka import make_producer
from syi_shared.metrics import counter
from syi_shared.settings import ServiceSettings
from syi_shared.topics import topic as lookup_topic


class Publisher:
    def __init__(
        self,
        service: str,
        settings: ServiceSettings | None = None,
        producer: Producer | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.service = service
        self.producer = producer or make_producer(settings, **{"error_cb": on_error} if on_error else {})
        self._published = counter(
            metric_names.MESSAGES_PUBLISHED, "Messages produced, by topic", labels=("service", "topic")
        )

    def publish(self, topic_name: str, value: BaseModel, key: str | None = None, **produce_args: Any) -> None:
        model = lookup_topic(topic_name).model
        if not isinstance(value, model):
            raise TypeError(f"{topic_name} takes {model.__name__}, got {type(value).__name__}")
        self.producer.produce(
            topic_name,
            key=(key if key is not None else value.key()).encode(),  # type: ignore[attr-defined]
            value=serde.dumps(value),
            **produce_args,
        )
        self._published.labels(self.service, topic_name).inc()
        self.producer.poll(0)

    def flush(self, timeout: float = 10.0) -> int:
        """Wait for delivery; returns how many messages are still queued."""
        return self.producer.flush(timeout)
