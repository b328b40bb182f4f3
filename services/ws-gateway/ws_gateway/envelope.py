"""The prototype's envelope `{"type", "timestamp", "data"}`, built as bytes.

A value's JSON is spliced in unchanged, so `data` is the record exactly as published and each
value is serialised once per fan-out, whatever the number of clients.
"""

from __future__ import annotations

from typing import Any

import orjson

from syi_shared.timefmt import now_text


def frame(kind: str, data_json: bytes, seq: int | None = None) -> bytes:
    """An envelope around already-encoded JSON; `timestamp` is now (the send time); `seq` is the
    record's position on the index topic (index stream only)."""
    if seq is None:
        return b'{"type":"%s","timestamp":"%s","data":%s}' % (kind.encode(), now_text().encode(), data_json)
    return b'{"type":"%s","timestamp":"%s","seq":%d,"data":%s}' % (kind.encode(), now_text().encode(), seq, data_json)


def message(kind: str, data: Any) -> bytes:
    return frame(kind, orjson.dumps(data))
