"""Decoding Kafka messages into topic models, with one reason string when they fail."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from syi_shared.dlq import send_to_dlq
from syi_shared.models import validation_reason
from syi_shared.topics import topic as lookup_topic


class DecodeError(ValueError):
    """A message that is not a valid value of its topic; `reason` goes into the DLQ envelope."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_value(topic_name: str, raw: bytes | str | None) -> BaseModel:
    if raw is None:
        raise DecodeError("value: missing (null message value)")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"value: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DecodeError(f"value: expected a JSON object, got {type(data).__name__}")
    try:
        return lookup_topic(topic_name).model.model_validate(data)
    except ValidationError as exc:
        raise DecodeError(validation_reason(exc)) from None


def decode_or_dead_letter(message: Any, producer: Any, service: str) -> BaseModel | None:
    """Decode a confluent-kafka message; on failure send it to `<topic>.dlq` and return None."""
    try:
        return decode_value(message.topic(), message.value())
    except DecodeError as exc:
        send_to_dlq(
            producer,
            source_topic=message.topic(),
            partition=message.partition(),
            offset=message.offset(),
            key=message.key(),
            raw_value=message.value(),
            error=exc.reason,
            service=service,
        )
        return None
