"""Decoding Kafka messages into topic models, with one reason string when they fail.

A message is valid when its value is its topic's model (plausibility bounds included,
docs/topics.md) and, when the caller has the message key, that key is the value's own
key (`model.key()`): a null or different key would put the value on another partition
than its kin and break per-key order, so it is dead-lettered like a bad value.
"""

from __future__ import annotations

import enum
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from syi_shared.dlq import send_to_dlq
from syi_shared.models import validation_reason
from syi_shared.topics import topic as lookup_topic

KEY_SHOWN_MAX = 200  # characters of a wrong key quoted in a reason


class _Unchecked(enum.Enum):
    UNCHECKED = "unchecked"


UNCHECKED = _Unchecked.UNCHECKED  # decode_value's default: the caller has no key to check
Key = bytes | str | None | _Unchecked


class DecodeError(ValueError):
    """A message that is not a valid value of its topic; `reason` goes into the DLQ envelope."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def key_reason(value: BaseModel, key: Any) -> str | None:
    """Why `key` is not the key of `value` (`key: expected 'USDC.binance', got null`), or None."""
    expected = value.key()  # type: ignore[attr-defined]
    if key is None:
        return f"key: expected {expected!r}, got null"
    text = key.decode("utf-8", errors="backslashreplace") if isinstance(key, bytes) else key
    if text == expected:
        return None
    if not isinstance(text, str):  # a tape line's key may be any JSON value
        return f"key: expected {expected!r}, got {orjson.dumps(text).decode()[:KEY_SHOWN_MAX]}"
    shown = repr(text[:KEY_SHOWN_MAX]) + ("..." if len(text) > KEY_SHOWN_MAX else "")
    return f"key: expected {expected!r}, got {shown}"


def validate_value(topic_name: str, data: Any, key: Key = UNCHECKED) -> BaseModel:
    """A parsed JSON value -> its topic's model, checked against `key` unless UNCHECKED."""
    if not isinstance(data, dict):
        raise DecodeError(f"value: expected a JSON object, got {type(data).__name__}")
    try:
        # The model's validator itself (what model_validate calls): a tape holds millions.
        value = lookup_topic(topic_name).model.__pydantic_validator__.validate_python(data)
    except ValidationError as exc:
        raise DecodeError(validation_reason(exc)) from None
    if key is not UNCHECKED and key != value.key():
        reason = key_reason(value, key)
        if reason is not None:
            raise DecodeError(reason)
    return value


def decode_value(topic_name: str, raw: bytes | str | None, key: Key = UNCHECKED) -> BaseModel:
    """Message bytes -> its topic's model; `key`: the message key to check (null included)."""
    if raw is None:
        raise DecodeError("value: missing (null message value)")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"value: invalid JSON ({exc})") from None
    return validate_value(topic_name, data, key)


def decode_or_dead_letter(message: Any, producer: Any, service: str) -> BaseModel | None:
    """Decode a confluent-kafka message (value and key); on failure send it to `<topic>.dlq` and return None."""
    try:
        return decode_value(message.topic(), message.value(), message.key())
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
