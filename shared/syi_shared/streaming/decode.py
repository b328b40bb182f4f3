"""Kafka message -> flow item: validated `Arrival`s (a bad one carries its dead letter), progress
markers, partition starts. The same function serves the live flow and a restore, so both see
exactly the same items."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message

from syi_shared.codec import DecodeError, decode_value
from syi_shared.logs import get_logger
from syi_shared.models import ProgressMarker
from syi_shared.streaming.step import Arrival, MarkerArrival, PartitionStart, dlq_message, failure_reason
from syi_shared.streaming.telemetry import StreamMetrics
from syi_shared.timefmt import millis
from syi_shared.topics import PROGRESS_TOPIC


def make_decoder(service: str, metrics: StreamMetrics | None) -> Callable[[Any], list[Any]]:
    """`decode(item) -> [item]`; `metrics` None: count nothing (a restore re-reading inputs)."""
    log = get_logger(step="decode", service=service)

    def decode(item: Any) -> list[Any]:
        if isinstance(item, PartitionStart):
            return [item]
        message: Message = item
        if message.error() is not None:
            if message.error().code() != KafkaError._PARTITION_EOF:
                log.warning("source_error", error=str(message.error()))
            return []
        topic, partition, offset = message.topic() or "", message.partition() or 0, message.offset() or 0
        raw, key = message.value(), message.key()
        if topic == PROGRESS_TOPIC.name:
            try:
                return [MarkerArrival(ProgressMarker.model_validate(orjson.loads(raw or b"null")), partition, offset)]
            except (ValueError, TypeError) as exc:
                log.warning("bad_progress_marker", offset=offset, error=str(exc)[:200])
                return []
        if metrics is not None:
            metrics.consumed.labels(service, topic).inc()
        place = dict(topic=topic, partition=partition, offset=offset)
        try:
            value = decode_value(topic, raw, key=key)
            moment = getattr(value, "event_time", None) or getattr(value, "bucket_end", None)
            if moment and metrics is not None:
                metrics.saw(topic, millis(moment))
        except DecodeError as exc:
            if metrics is not None:
                metrics.dead.labels(service, topic, "invalid").inc()
                log.warning("invalid_message", **place, error=exc.reason[:200])
            dead = dlq_message(topic, partition, offset, key, raw, exc.reason, service)
            return [Arrival(**place, key=key, raw=None, value=None, dead=dead)]
        except Exception as exc:  # noqa: BLE001 (a message that breaks the decoder is still just one message)
            reason = f"processing_error: {failure_reason(exc)}"
            if metrics is not None:
                metrics.dead.labels(service, topic, "processing_error").inc()
                log.exception("processing_error", **place)
            dead = dlq_message(topic, partition, offset, key, raw, reason, service)
            return [Arrival(**place, key=key, raw=None, value=None, dead=dead)]
        return [Arrival(**place, key=key, raw=raw, value=value)]

    return decode
