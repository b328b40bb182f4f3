"""T-bill discount rate to an APY comparable with stablecoin yields, and the risk premium
(docs/methodology.md §7.5)."""

from __future__ import annotations

TERM_DAYS = 91  # constants of the version: a 13-week bill, money-market basis 360, year 365
DISCOUNT_BASIS_DAYS = 360
YEAR_DAYS = 365


def discount_to_apy(discount_decimal: float) -> float:
    """P = 1 − d·91/360, apy = (1/P)^(365/91) − 1.

    Total on the rates trad.tbill accepts (−5 % to 50 %, docs/topics.md). A discount of
    360/91 (≈ 395.6 %) or more prices the bill at nothing or less: no APY exists, and
    this says so rather than returning a complex number.
    """
    price = 1 - discount_decimal * TERM_DAYS / DISCOUNT_BASIS_DAYS
    if not price > 0:
        raise ValueError(f"a discount rate of {discount_decimal!r} prices the bill at {price!r}: no APY")
    return (1 / price) ** (YEAR_DAYS / TERM_DAYS) - 1


def risk_premium(syi_decimal: float, tbill_apy: float | None) -> float | None:
    return None if tbill_apy is None else syi_decimal - tbill_apy
