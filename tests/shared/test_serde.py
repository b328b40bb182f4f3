"""`serde.canonical_json` writes RFC 8785 with orjson: it must give exactly the bytes (or the
refusal) of the `rfc8785` package for any JSON value, numbers of every magnitude first."""

from __future__ import annotations

import math
import random
import struct

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from syi_shared.serde import canonical_json


def reference(value: object) -> bytes | type[BaseException]:
    try:
        return rfc8785.dumps(value)
    except Exception as exc:  # noqa: BLE001 - the refusal itself is compared
        return type(exc)


def ours(value: object) -> bytes | type[BaseException]:
    try:
        return canonical_json(value)
    except Exception as exc:  # noqa: BLE001
        return type(exc)


# Where orjson and ECMAScript part ways, and the edges around them.
EDGES = [0.0, -0.0, 5.0, -75.0, 1e15, 2.0**53 - 1, 2.0**53, -(2.0**53), 1e16, 1.2345678901234568e20, 1e21, 1e22,
         1e-5, -1e-5, 9.999999999999999e-06, 4.823040373928001e-06, 1e-6, 1e-7, 5e-324, 1.7976931348623157e308,
         0.1, 0.99975, 123.456, math.nan, math.inf, -math.inf, 2**53 - 1, 2**53, -(2**53), True, False, None]


@pytest.mark.parametrize("value", EDGES, ids=repr)
def test_numbers_at_the_edges_match_rfc8785(value: object) -> None:
    assert ours(value) == reference(value)
    assert ours({"x": [value]}) == reference({"x": [value]})


def test_floats_of_every_magnitude_match_rfc8785() -> None:
    rng = random.Random(8785)
    floats = [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(20_000)]
    floats += [rng.uniform(-1, 1) * 10 ** rng.uniform(-8, 22) for _ in range(20_000)]
    floats += [round(rng.uniform(0, 1e4), rng.randint(0, 8)) for _ in range(10_000)]
    mismatched = [value for value in floats if ours(value) != reference(value)]
    assert mismatched == []


def test_strings_match_rfc8785_escapes() -> None:
    every_ascii = "".join(map(chr, range(128)))
    for text in (every_ascii, "\u2028\u2029é😀\ufeff", "\ud800"):
        assert ours([text, {"k": text}]) == reference([text, {"k": text}])


def test_keys_sort_by_utf16_code_units_like_rfc8785() -> None:
    # U+1F600 sorts after U+FFFD by code point but before it by UTF-16 code unit (0xD83D).
    value = {"\ufffd": 2, "\U0001f600": 1, "b": 3, "a": 4, "é": 5}
    assert ours(value) == reference(value) == '{"a":4,"b":3,"é":5,"\U0001f600":1,"\ufffd":2}'.encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**60), max_value=2**60) | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=6), children, max_size=6),
    max_leaves=40,
)


@settings(max_examples=600, deadline=None)
@given(json_values)
def test_any_json_value_matches_rfc8785(value: object) -> None:
    assert ours(value) == reference(value)
