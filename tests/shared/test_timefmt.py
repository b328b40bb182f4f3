"""The one time layout: `parse_utc`'s fast path for the usual 24-character layout accepts
exactly what the pattern (`timefmt.UTC_PATTERN`) and the calendar accept, and fails the same way."""

from __future__ import annotations

import random
from datetime import datetime

import pytest

from syi_shared.timefmt import _UTC_Z, millis, parse_utc

USUAL = "2026-11-20T13:45:59.123Z"
# digits, separators, what ISO 8601 also allows (",", "+", lower case), and look-alikes
ALPHABET = list("0123456789-:T.Z+, zt_\n\t/e") + ["٣", "１", "²", "\u200b"]


def by_the_pattern(text: str) -> datetime | str:
    """The slow path alone: the outcome (datetime or error text) before the fast path existed."""
    try:
        if _UTC_Z.fullmatch(text) is None:
            raise ValueError(f"expected an ISO-8601 UTC time ending in 'Z', got {text!r}")
        return datetime.fromisoformat(text)
    except ValueError as exc:
        return str(exc)


def outcome(text: str) -> datetime | str:
    try:
        return parse_utc(text)
    except ValueError as exc:
        return str(exc)


def mutations(count: int, seed: int = 15) -> list[str]:
    rng = random.Random(seed)
    texts = [USUAL[:i] + c + USUAL[i + 1:] for i in range(len(USUAL)) for c in ALPHABET]
    for _ in range(count):
        chars = list(USUAL)
        for _ in range(rng.randint(1, 3)):
            chars[rng.randrange(len(chars))] = rng.choice(ALPHABET)
        texts.append("".join(chars))
    return texts


def test_the_fast_path_agrees_with_the_pattern_on_every_mutation() -> None:
    texts = mutations(50_000)
    disagreements = [(t, outcome(t), by_the_pattern(t)) for t in texts if outcome(t) != by_the_pattern(t)]
    assert not disagreements, disagreements[:5]
    # both kinds occur: the fuzz reaches accepted texts and refused ones of the fast layout
    usual = [t for t in texts if len(t) == 24 and t[4:20:3] == "--T::." and t[23] == "Z"]
    assert any(isinstance(outcome(t), datetime) for t in usual) and any(isinstance(outcome(t), str) for t in usual)


@pytest.mark.parametrize("text", [
    "2026-02-30T10:00:00.000Z",  # the layout, not the calendar: fromisoformat's own error, as before
    "2026-11-20T24:00:00.000Z", "2026-11-20T10:00:00.00aZ", "2026-11-20T10:00:00.000z",
    "2026-11-20T10:00:00.1Z", "2026-11-20T10:00:00Z", "2026-11-20T10:00:00.123456Z",  # other precisions
])
def test_other_texts_keep_the_patterns_answer(text: str) -> None:
    assert outcome(text) == by_the_pattern(text)


def test_millis_of_the_usual_layout() -> None:
    assert millis(USUAL) == 1_795_182_359_123
    assert millis("2026-11-20T13:45:59Z") == 1_795_182_359_000
