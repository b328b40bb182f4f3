"""Peg deviation, Huber peg score and peg volatility (docs/methodology.md §2.4–2.6)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from syi_shared.methodology.stats import clip, fixed_mean, fixed_population_variance, to_fixed


def dev_bps(price: float) -> float:
    return 10_000 * (price - 1)


def dev_pct(price: float) -> float:
    """The quantity σ is taken over: 100·(p − 1)."""
    return 100 * (price - 1)


def huber(x: float, delta: float) -> float:
    """x²/2 inside ±δ, linear δ(|x| − δ/2) outside: big depegs weigh, not dominate."""
    magnitude = abs(x)
    if magnitude <= delta:
        return x * x / 2
    return delta * (magnitude - delta / 2)


def score_from_mean_loss(mean_loss: float, delta: float, zero_score_bps: float) -> float:
    """peg_score = clip(1 − L / h(zero_score_bps)): a sustained ±zero_score_bps scores 0."""
    return clip(1 - mean_loss / huber(zero_score_bps, delta))


def peg_score(devs_bps: Sequence[float], delta: float, zero_score_bps: float) -> float:
    """Peg score over a window of deviations (each bucket with a price counts once)."""
    losses = [to_fixed(huber(dev, delta)) for dev in devs_bps]
    return score_from_mean_loss(fixed_mean(sum(losses), len(losses)), delta, zero_score_bps)


def sigma_from_sums(total: int, total_sq: int, count: int) -> float:
    """Population standard deviation from exact sums; 0 when fewer than two values."""
    if count < 2:
        return 0.0
    return math.sqrt(max(0.0, fixed_population_variance(total, total_sq, count)))


def sigma_peg_pct(prices: Sequence[float]) -> float:
    """σ of 100·(p − 1) over the window's prices (population; 0 when fewer than two)."""
    fixed = [to_fixed(dev_pct(price)) for price in prices]
    return sigma_from_sums(sum(fixed), sum(value * value for value in fixed), len(fixed))
