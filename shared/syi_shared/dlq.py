"""The dead-letter helper every consumer uses: a failed message goes to `<topic>.dlq`
with its raw bytes, the reason and its origin, and the consumer moves on."""

from __future__ import annotations

import base64

from confluent_kafka import Producer

from syi_shared import serde
from syi_shared.models import DeadLetter
from syi_shared.timefmt import now_text


def _text(raw: bytes | None) -> str:
    if raw is None:
        return ""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii")


def dead_letter(
    *,
    source_topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
    raw_value: bytes | None,
    error: str,
    service: str,
) -> DeadLetter:
    return DeadLetter(
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        key=_text(key) if key is not None else None,
        raw_value=_text(raw_value),
        error=error,
        service=service,
        failed_at=now_text(),
    )


def send_to_dlq(
    producer: Producer,
    *,
    source_topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
    raw_value: bytes | None,
    error: str,
    service: str,
) -> DeadLetter:
    """Produce the envelope to `<source_topic>.dlq` under the original key; returns it."""
    letter = dead_letter(
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        key=key,
        raw_value=raw_value,
        error=error,
        service=service,
    )
    producer.produce(f"{source_topic}.dlq", key=key, value=serde.dumps(letter))
    producer.poll(0)
    return letter
