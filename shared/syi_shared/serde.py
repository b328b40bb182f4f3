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
    JCS implementation gives the same bytes. Integers beyond 2**53 are refused (not portable).

    orjson writes it (the `rfc8785` package, pure Python, was a fifth of a backfill's time),
    once `_as_ecmascript` has respelled the few numbers it writes differently; anything else
    unusual (non-ASCII keys, non-finite or huge numbers, other types) goes to `rfc8785`, which
    writes it or refuses it. tests/shared/test_serde.py holds the two to the same bytes."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    try:
        return orjson.dumps(_as_ecmascript(value), option=orjson.OPT_SORT_KEYS)
    except (_LeftToRfc8785, orjson.JSONEncodeError):
        return rfc8785.dumps(value)


_SAFE_INTEGER = 2**53  # I-JSON's exact integers: rfc8785 refuses any beyond ±(2**53 - 1)


# Leaves orjson and JCS write alike go through without a call (most of a record): strings,
# bools, nulls, and finite non-integral floats from 1e-5 up (none reaches 2**53: those are
# all integral). The test is spelled out where it is used, a call per leaf being its cost.
_AS_IS = frozenset((str, bool, type(None)))


class _LeftToRfc8785(Exception):
    pass


def _as_ecmascript(value: Any) -> Any:
    """`value` with each float orjson would write unlike ECMAScript's Number.toString made one
    it writes alike (measured over every magnitude): integral floats below 2**53 as ints
    (orjson: `5.0`), integral ones up to 1e21 and non-integral ones below 1e-5 as rfc8785's
    own text (orjson: `1e+16`, `4.8e-6`). Keys must be ASCII, where JCS's UTF-16 key order and
    orjson's are the same."""
    kind = type(value)
    if kind is dict:
        ready = {}
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                raise _LeftToRfc8785
            ready[key] = item if type(item) in _AS_IS or (
                type(item) is float and 1e-5 <= abs(item) < _SAFE_INTEGER and not item.is_integer()
            ) else _as_ecmascript(item)
        return ready
    if kind is list or kind is tuple:
        return [item if type(item) in _AS_IS or (
            type(item) is float and 1e-5 <= abs(item) < _SAFE_INTEGER and not item.is_integer()
        ) else _as_ecmascript(item) for item in value]
    if kind is float:
        if value.is_integer():
            if -_SAFE_INTEGER < value < _SAFE_INTEGER:
                return int(value)
            return orjson.Fragment(rfc8785.dumps(value)) if -1e21 < value < 1e21 else value
        if value != value or value in (float("inf"), float("-inf")):
            raise _LeftToRfc8785
        return orjson.Fragment(rfc8785.dumps(value)) if -1e-5 < value < 1e-5 else value
    if kind is int:
        if -_SAFE_INTEGER < value < _SAFE_INTEGER:
            return value
        raise _LeftToRfc8785
    if kind is str or kind is bool or value is None:
        return value
    raise _LeftToRfc8785


def sorted_json(value: Any) -> bytes:
    """The original recipe's form: orjson with sorted keys, no whitespace. Its number format is
    orjson's own (`1e-7`, `1e+16`), spelled out in docs/audit.md for other implementations."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
