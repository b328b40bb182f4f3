"""orjson (de)serialisation of topic values: one canonical byte form per value.

`dumps(model)` omits nothing and reorders nothing, so `loads(dumps(v)) == v` and a
record re-serialises to the same bytes. `canonical_json` (sorted keys, no spaces) is
what content identifiers hash.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def dumps(value: BaseModel | dict[str, Any] | list[Any]) -> bytes:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return orjson.dumps(value)


def loads_raw(raw: bytes | str) -> Any:
    """Parse JSON; orjson rejects NaN/Infinity literals, which the contract forbids anyway."""
    return orjson.loads(raw)


def loads(model: type[M], raw: bytes | str) -> M:
    """Parse and validate; raises `orjson.JSONDecodeError` or `pydantic.ValidationError`."""
    return model.model_validate(orjson.loads(raw))


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace: the bytes the audit chain hashes."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
