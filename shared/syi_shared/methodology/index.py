"""The per-bucket index: included set, renormalised weights, SYI, coverage, status, HHI (docs/methodology.md §7)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from syi_shared.models import RayRecord

# Exclusion reason codes, in the order they are tested (§7.1), plus `no_ray` when the
# ray-calc record of the bucket never arrived.
STALE_PRICE = "stale_price"
STALE_BOOK = "stale_book"
NO_APY = "no_apy"
NO_RAY = "no_ray"

COVERAGE_DEGRADED_BELOW = 0.5  # constant of the version


@dataclass(frozen=True, slots=True)
class Aggregate:
    syi: float
    coverage: float
    hhi: float
    renormalised: dict[str, float]


def exclusion_reason(record: RayRecord | None) -> str | None:
    """Why a weighted constituent is left out of this bucket, or None when it is included."""
    if record is None:
        return NO_RAY
    if record.price_usd is None or record.peg_score is None:
        return STALE_PRICE
    if record.depth_usd is None or record.liquidity_score is None:
        return STALE_BOOK
    if record.apy_eff_decimal is None or record.ray_decimal is None:
        return NO_APY
    return None


def aggregate(weights: Mapping[str, float], rays: Mapping[str, float]) -> Aggregate:
    """SYI over the included set: w' = w / Σw, syi = Σ w'·ray, hhi = 10 000·Σ w'².

    `weights` holds the weights in force of the included constituents only. Coverage is
    clamped to 1 (a full set's float sum may land one ulp above it).
    """
    if not weights:
        raise ValueError("aggregate over an empty included set")
    total = math.fsum(weights.values())
    renormalised = {symbol: weight / total for symbol, weight in weights.items()}
    syi = math.fsum(renormalised[symbol] * rays[symbol] for symbol in weights)
    hhi = 10_000 * math.fsum(weight * weight for weight in renormalised.values())
    return Aggregate(syi, min(1.0, total), hhi, renormalised)


def status(included: int, coverage: float, n_min: int) -> str:
    return "degraded" if included < n_min or coverage < COVERAGE_DEGRADED_BELOW else "ok"
