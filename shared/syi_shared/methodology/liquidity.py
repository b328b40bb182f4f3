"""Order-book depth within the band and the liquidity score (docs/methodology.md §3)."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

from syi_shared.methodology.stats import clip

DEPTH_UNIT_USD = 1e6  # constant of the version: depth is scored in millions of USD


def book_depth(bids: Sequence[Sequence[float]], asks: Sequence[Sequence[float]], band_bps: float) -> float | None:
    """Σ price·qty of the levels within ±band of the mid, in the quote currency.

    None for a book with an empty side (it counts as no snapshot). The band edges are
    inclusive and computed exactly as `mid * (1 - band_bps / 10_000)` and
    `mid * (1 + band_bps / 10_000)`.
    """
    if not bids or not asks:
        return None
    mid = (bids[0][0] + asks[0][0]) / 2
    floor = mid * (1 - band_bps / 10_000)
    ceiling = mid * (1 + band_bps / 10_000)
    terms = [price * qty for price, qty in bids if price >= floor]
    terms += [price * qty for price, qty in asks if price <= ceiling]
    return math.fsum(terms)


def measures(base: str, quote: str, symbol: str, candidates: Collection[str]) -> bool:
    """A book measures its base, and its quote too when the quote is a candidate (§3.2)."""
    return base == symbol or (quote == symbol and quote in candidates)


def liquidity_score(depth_usd: float, reference_depth_usd: float) -> float:
    """clip(log10(1 + D/1e6) / log10(1 + reference/1e6)): the reference depth scores 1."""
    return clip(math.log10(1 + depth_usd / DEPTH_UNIT_USD) / math.log10(1 + reference_depth_usd / DEPTH_UNIT_USD))
