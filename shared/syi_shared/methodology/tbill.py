"""T-bill discount rate to an APY comparable with stablecoin yields, and the risk premium (§7.4)."""

from __future__ import annotations

TERM_DAYS = 91  # constants of the version: a 13-week bill, money-market basis 360, year 365
DISCOUNT_BASIS_DAYS = 360
YEAR_DAYS = 365


def discount_to_apy(discount_decimal: float) -> float:
    """P = 1 − d·91/360, apy = (1/P)^(365/91) − 1."""
    price = 1 - discount_decimal * TERM_DAYS / DISCOUNT_BASIS_DAYS
    return (1 / price) ** (YEAR_DAYS / TERM_DAYS) - 1


def risk_premium(syi_decimal: float, tbill_apy: float | None) -> float | None:
    return None if tbill_apy is None else syi_decimal - tbill_apy
