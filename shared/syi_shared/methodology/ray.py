"""Risk-adjusted yield (docs/methodology.md §5)."""

from __future__ import annotations

import math


def s_worst(peg_score: float | None, liquidity_score: float | None, counterparty_score: float) -> float | None:
    """The weakest of the three risk scores; None when a market score is missing."""
    if peg_score is None or liquidity_score is None:
        return None
    return min(peg_score, liquidity_score, counterparty_score)


def ray(apy_eff: float, worst: float, kappa: float) -> float:
    """apy_eff · exp(−κ(1 − s_worst)) (whitepaper Annex A.2)."""
    return apy_eff * math.exp(-kappa * (1 - worst))
