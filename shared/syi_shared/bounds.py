"""Plausibility bounds of the input topics (docs/topics.md, "Plausibility bounds").

A value outside them is not data: the models reject it with an error of type
`out_of_range` (or `future` for an event time after its ingest time), which
`models.validation_reason` turns into a reason starting `out_of_range:` / `future:`.
The bounds never read a clock, so a tape validates the same way whenever it is read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic_core import PydanticCustomError

from syi_shared.timefmt import millis

OUT_OF_RANGE = "out_of_range"
FUTURE = "future"
BOUND_ERRORS = (OUT_OF_RANGE, FUTURE)

PRICE_MAX = 1e6  # cc.prices price/bid/ask, order book level prices, ex.mktcap price_usd
QUANTITY_MAX = 1e15  # order book level quantity
USD_AMOUNT_MAX = 1e13  # dl.apy tvl_usd, ex.mktcap market_cap_usd
APY_PCT_MIN, APY_PCT_MAX = -100.0, 10_000.0  # dl.apy apy_*_pct
RATE_PCT_MIN, RATE_PCT_MAX = -5.0, 50.0  # trad.tbill rate_pct
MAX_LEVELS = 1000  # order book levels a side
EARLIEST_TIME = "2009-01-03T00:00:00.000Z"  # no input of this index can be older than Bitcoin's genesis block
EARLIEST_MS = millis(EARLIEST_TIME)
FUTURE_SKEW_MS = 5_000  # event_time may lead ingest_time by this much (clock skew), not more


def out_of_range(detail: str) -> PydanticCustomError:
    # The detail travels as context so braces in it are never read as a template.
    return PydanticCustomError(OUT_OF_RANGE, "{detail}", {"detail": detail})


def future(detail: str) -> PydanticCustomError:
    return PydanticCustomError(FUTURE, "{detail}", {"detail": detail})


def between(low: float, high: float, low_text: str, high_text: str, low_open: bool = False) -> Callable[[float], float]:
    """A check of low ≤ x ≤ high (low < x when `low_open`); the texts are how the bounds are written."""

    def check(value: float) -> float:
        if value > high:
            raise out_of_range(f"{value!r} is above {high_text}")
        if low_open and value <= low:
            raise out_of_range(f"{value!r} is not above {low_text}")
        if value < low:
            raise out_of_range(f"{value!r} is below {low_text}")
        return value

    return check


price = between(0.0, PRICE_MAX, "0", "1e6", low_open=True)
usd_amount = between(0.0, USD_AMOUNT_MAX, "0", "1e13")
apy_pct = between(APY_PCT_MIN, APY_PCT_MAX, "-100", "10000")
rate_pct = between(RATE_PCT_MIN, RATE_PCT_MAX, "-5", "50")


def input_time(text: str) -> str:
    """A `...Z` time (a ValueError naming the format otherwise) no earlier than EARLIEST_TIME;
    `timefmt.millis` keeps it parsed for every later reader."""
    if millis(text) < EARLIEST_MS:
        raise out_of_range(f"{text} is before {EARLIEST_TIME[:10]}")
    return text


# An order book level's bounds are pydantic-core constraints (models.Level): their error types,
# the constraint each names in its context, and how the error reads as a bound.
_LEVEL_CONSTRAINTS = {"greater_than": ("gt", "is not above"), "greater_than_equal": ("ge", "is below"),
                      "less_than_equal": ("le", "is above")}
_LEVEL_BOUND_TEXT = {0.0: "0", PRICE_MAX: "1e6", QUANTITY_MAX: "1e15"}


def level_error(item: dict[str, Any]) -> dict[str, Any] | None:
    """A level constraint's error (at `bids.3.0`, say) as the `out_of_range` error the other
    bounds raise, or None for any other error."""
    loc, kind = item.get("loc", ()), item.get("type")
    if len(loc) != 3 or loc[0] not in ("bids", "asks") or kind not in _LEVEL_CONSTRAINTS:
        return None
    name, words = _LEVEL_CONSTRAINTS[kind]
    bound = item.get("ctx", {}).get(name)
    return {**item, "type": OUT_OF_RANGE, "msg": f"{item.get('input')!r} {words} {_LEVEL_BOUND_TEXT.get(bound, bound)}"}


def at_most_levels(levels: Any) -> Any:
    # Runs before the levels are validated one by one, so a huge book is refused cheaply.
    if isinstance(levels, (list, tuple)) and len(levels) > MAX_LEVELS:
        raise out_of_range(f"{len(levels)} levels is above {MAX_LEVELS}")
    return levels


def event_not_after_ingest(event_time: str, ingest_time: str) -> None:
    if millis(event_time) - millis(ingest_time) > FUTURE_SKEW_MS:
        raise future(f"event_time {event_time} is more than {FUTURE_SKEW_MS // 1000} s after ingest_time {ingest_time}")


def observed_by_event_date(observation_date: str, event_time: str) -> None:
    if observation_date > event_time[:10]:  # both YYYY-MM-DD: text order is date order
        raise out_of_range(f"{observation_date} is after the event_time date {event_time[:10]}")
