"""Venue and symbol USD prices (docs/methodology.md §2.1–2.3) and the USD conversion books share (§3.1)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from syi_shared.methodology.stats import median

USD = "USD"


@dataclass(frozen=True, slots=True)
class VenueQuote:
    """The latest fresh price of one (symbol, venue) as of t, in its quote currency."""

    venue: str
    quote: str
    price: float
    event_ms: int


@dataclass(frozen=True, slots=True)
class SymbolPrice:
    """p(t) of one symbol: None when no fresh venue; `assumed` when a quote had no USD price."""

    price: float | None
    venues: int
    assumed: bool
    max_event_ms: int | None


def is_fresh(bucket_end_ms: int, event_ms: int, max_age_ms: int) -> bool:
    """Fresh at t when t - event_time <= max_age (an observation exactly max_age old is fresh)."""
    return bucket_end_ms - event_ms <= max_age_ms


def usd_reference(quotes: Iterable[VenueQuote]) -> float | None:
    """A symbol's USD price from its USD-quoted venues only (§2.2); None when it has none."""
    usd_prices = [quote.price for quote in quotes if quote.quote == USD]
    return median(usd_prices) if usd_prices else None


def usd_references(fresh: Mapping[str, Sequence[VenueQuote]]) -> dict[str, float]:
    """USD price of every symbol that has a fresh USD-quoted venue: the conversion table."""
    table: dict[str, float] = {}
    for symbol, quotes in fresh.items():
        reference = usd_reference(quotes)
        if reference is not None:
            table[symbol] = reference
    return table


def to_usd(amount: float, quote: str, references: Mapping[str, float]) -> tuple[float, bool]:
    """Convert an amount quoted in `quote` to USD; (amount, True) when the rate is assumed 1.0."""
    if quote == USD:
        return amount, False
    rate = references.get(quote)
    if rate is None:
        return amount, True
    return amount * rate, False


def symbol_price(quotes: Sequence[VenueQuote], references: Mapping[str, float]) -> SymbolPrice:
    """Median of the fresh venue prices after USD conversion (§2.3)."""
    if not quotes:
        return SymbolPrice(None, 0, False, None)
    assumed = False
    usd_prices = []
    for quote in quotes:
        usd, was_assumed = to_usd(quote.price, quote.quote, references)
        assumed = assumed or was_assumed
        usd_prices.append(usd)
    return SymbolPrice(median(usd_prices), len(quotes), assumed, max(q.event_ms for q in quotes))
