"""Plausibility bounds of the input topics (docs/topics.md, "Plausibility bounds").

A value outside them is not data: the models reject it with an error of type
`out_of_range` (or `future` for an event time after its ingest time), which
`models.validation_reason` turns into a reason starting `out_of_range:` / `future:`.
The bounds never read a clock, so a tape validates the same way whenever it is read.
"""

from __future__ import annotations

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


# The numeric bounds are pydantic-core constraints (models.Price and kin): a tape holds
# millions of numbers, and a Python check per number was most of a backfill's time. An input
# model has no other numeric constraint, so `validation_reason` words each such error as a
# bound: the error types, the constraint each names in its context, how the bounds are written.
_CONSTRAINTS = {"greater_than": ("gt", "is not above"), "greater_than_equal": ("ge", "is below"),
                "less_than_equal": ("le", "is above")}
_BOUND_TEXT = {0.0: "0", PRICE_MAX: "1e6", QUANTITY_MAX: "1e15", USD_AMOUNT_MAX: "1e13", APY_PCT_MIN: "-100",
               APY_PCT_MAX: "10000", RATE_PCT_MIN: "-5", RATE_PCT_MAX: "50"}


def constraint_error(item: dict[str, Any]) -> dict[str, Any] | None:
    """An input model's numeric constraint error (at `price` or `bids.3.0`, say) as the
    `out_of_range` error `-1.0 is below 0`, or None for any other error."""
    kind = item.get("type")
    if kind not in _CONSTRAINTS:
        return None
    name, words = _CONSTRAINTS[kind]
    bound = item.get("ctx", {}).get(name)
    value = item.get("input")
    value = float(value) if type(value) is int else value  # as the model holds it: JSON 0 is 0.0
    return {**item, "type": OUT_OF_RANGE, "msg": f"{value!r} {words} {_BOUND_TEXT.get(bound, bound)}"}


def input_time(text: str) -> str:
    """A `...Z` time (a ValueError naming the format otherwise) no earlier than EARLIEST_TIME;
    `timefmt.millis` keeps it parsed for every later reader (the engines' ordering and buckets)."""
    if millis(text) < EARLIEST_MS:
        raise out_of_range(f"{text} is before {EARLIEST_TIME[:10]}")
    return text


def at_most_levels(levels: Any) -> Any:
    # Runs before the levels are validated one by one, so a huge book is refused cheaply.
    if isinstance(levels, (list, tuple)) and len(levels) > MAX_LEVELS:
        raise out_of_range(f"{len(levels)} levels is above {MAX_LEVELS}")
    return levels


def event_not_after_ingest(event_time: str, ingest_time: str) -> None:
    if len(event_time) == len(ingest_time) and event_time <= ingest_time:
        return  # the same layout (timefmt.UTC_PATTERN): text order is time order
    if millis(event_time) - millis(ingest_time) > FUTURE_SKEW_MS:
        raise future(f"event_time {event_time} is more than {FUTURE_SKEW_MS // 1000} s after ingest_time {ingest_time}")


def observed_by_event_date(observation_date: str, event_time: str) -> None:
    if observation_date > event_time[:10]:  # both YYYY-MM-DD: text order is date order
        raise out_of_range(f"{observation_date} is after the event_time date {event_time[:10]}")
