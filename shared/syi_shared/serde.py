"""orjson (de)serialisation of topic values: one canonical byte form per value.

`dumps(model)` omits nothing and reorders nothing, so `loads(dumps(v)) == v` and a
record re-serialises to the same bytes. Content identifiers hash a canonical form instead
(docs/audit.md): `canonical_json` (RFC 8785, JCS) for new records, `sorted_json` (the
original recipe) to verify records published before it.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
import rfc8785
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def dumps(value: BaseModel | dict[str, Any] | list[Any]) -> bytes:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return orjson.dumps(value)


def loads(model: type[M], raw: bytes | str) -> M:
    """Parse and validate; raises `orjson.JSONDecodeError` or `pydantic.ValidationError`."""
    return model.model_validate(orjson.loads(raw))


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS): sorted keys, no whitespace, numbers as ECMAScript writes them, so any
    JCS implementation gives the same bytes. Integers beyond 2**53 are refused (not portable)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return rfc8785.dumps(value)


def sorted_json(value: Any) -> bytes:
    """The original recipe's form: orjson with sorted keys, no whitespace. Its number format is
    orjson's own (`1e-7`, `1e+16`), spelled out in docs/audit.md for other implementations."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
