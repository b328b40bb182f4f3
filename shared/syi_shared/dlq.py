"""The dead-letter helper every consumer uses: a failed message goes to `<topic>.dlq`
with its raw bytes, the reason and its origin, and the consumer moves on.

A dead letter always fits where its source did (docs/topics.md, "<topic>.dlq"): the
envelope keeps at most RAW_MAX_BYTES of the original value (with its full length and
SHA-256 when cut), and the reason and key text are cut too, so a value near the broker's
message limit still has a dead letter the broker accepts.
"""

from __future__ import annotations

import base64
import hashlib

from confluent_kafka import Producer

from syi_shared import serde
from syi_shared.models import DeadLetter
from syi_shared.timefmt import now_text

RAW_MAX_BYTES = 64 * 1024  # of the original value kept in `raw_value`
ERROR_MAX_CHARS = 4096  # a reason that quotes a huge input is cut here
KEY_MAX_CHARS = 1024  # of the key text in the envelope (the DLQ message's own key stays whole)


def _text(raw: bytes | None) -> str:
    if raw is None:
        return ""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii")


def _cut_utf8(raw: bytes, limit: int) -> bytes:
    """The first `limit` bytes, minus a UTF-8 character the cut split in two (so text stays text)."""
    head = raw[:limit]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data" and exc.start >= len(head) - 3:
            return head[: exc.start]
    return head


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def raw_fields(raw: bytes | None) -> dict[str, str | int | None]:
    """`raw_value` (+ `raw_length`, `raw_sha256` when the original is longer than RAW_MAX_BYTES)."""
    if raw is None or len(raw) <= RAW_MAX_BYTES:
        return {"raw_value": _text(raw)}
    return {
        "raw_value": _text(_cut_utf8(raw, RAW_MAX_BYTES)),
        "raw_length": len(raw),
        "raw_sha256": hashlib.sha256(raw).hexdigest(),
    }


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
        key=_cut(_text(key), KEY_MAX_CHARS) if key is not None else None,
        error=_cut(error, ERROR_MAX_CHARS),
        service=service,
        failed_at=now_text(),
        **raw_fields(raw_value),  # type: ignore[arg-type]
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
