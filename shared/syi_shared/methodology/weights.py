"""Eligibility and the capped market-cap weights of a rebalance (docs/methodology.md §1, §6)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from syi_shared.methodology.params import Eligibility, Methodology


@dataclass(frozen=True, slots=True)
class CandidateView:
    """What a rebalance knows of one candidate as of its bucket (None: unknown or stale)."""

    symbol: str
    market_cap_usd: float | None
    price_usd: float | None
    liquidity_score: float | None
    sigma_peg_pct: float | None


@dataclass(frozen=True, slots=True)
class Rebalance:
    """A rebalance outcome: `weights` None when fewer than n_min candidates were eligible."""

    weights: dict[str, float] | None
    eligible: tuple[str, ...]
    cap_infeasible: bool


def is_eligible(view: CandidateView, rules: Eligibility) -> bool:
    """Fresh market cap >= min, price within [peg_low, peg_high], liquidity >= min (bounds inclusive)."""
    return (
        view.market_cap_usd is not None
        and view.market_cap_usd >= rules.min_market_cap_usd
        and view.price_usd is not None
        and rules.peg_low <= view.price_usd <= rules.peg_high
        and view.liquidity_score is not None
        and view.liquidity_score >= rules.min_liquidity_score
    )


def raw_weight(market_cap_usd: float, compliance_flag: bool, compliance_factor: float, sigma_peg_pct: float) -> float:
    """market_cap · c / (1 + σ²), c = compliance_factor when flagged, else 1."""
    factor = compliance_factor if compliance_flag else 1.0
    return market_cap_usd * factor / (1 + sigma_peg_pct * sigma_peg_pct)


def normalise(raw: Mapping[str, float]) -> dict[str, float]:
    total = math.fsum(raw.values())
    return {symbol: value / total for symbol, value in raw.items()}


def water_fill(weights: Mapping[str, float], cap: float) -> tuple[dict[str, float], bool]:
    """Cap every weight at `cap`, spreading the excess pro rata over the uncapped ones.

    Returns (weights, infeasible); infeasible (cap·N < 1) leaves the weights unchanged.
    A capped weight is exactly `cap`, and the loop only ends when no weight exceeds it.
    """
    if cap * len(weights) < 1:
        return dict(weights), True
    capped: set[str] = set()
    while True:
        free = [symbol for symbol in weights if symbol not in capped]
        room = 1 - cap * len(capped)
        free_total = math.fsum(weights[symbol] for symbol in free)
        result = {
            symbol: cap if symbol in capped else (weights[symbol] * room / free_total if free_total > 0 else 0.0)
            for symbol in weights
        }
        over = [symbol for symbol in free if result[symbol] > cap]
        if not over:
            return result, False
        capped.update(over)


def rebalance(views: Sequence[CandidateView], methodology: Methodology) -> Rebalance:
    """Eligible candidates → raw weights → normalised → capped; needs n_min eligible."""
    rules = methodology.eligibility
    eligible = [view for view in views if is_eligible(view, rules)]
    symbols = tuple(view.symbol for view in eligible)
    if len(eligible) < methodology.weights.n_min:
        return Rebalance(None, symbols, False)
    raw = {
        view.symbol: raw_weight(
            view.market_cap_usd or 0.0,
            methodology.candidate(view.symbol).compliance_flag,
            methodology.weights.compliance_factor,
            view.sigma_peg_pct or 0.0,
        )
        for view in eligible
    }
    if math.fsum(raw.values()) <= 0:
        return Rebalance(None, symbols, False)
    capped, infeasible = water_fill(normalise(raw), methodology.weights.cap)
    return Rebalance(capped, symbols, infeasible)
