"""Effective APY of a constituent from its lending pools (docs/methodology.md §4)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from syi_shared.methodology.params import Apy
from syi_shared.methodology.stats import median
from syi_shared.models import PoolYield

MAD_TO_SIGMA = 1.4826  # constant of the version: MAD of a normal distribution → σ


@dataclass(frozen=True, slots=True)
class EffectiveApy:
    """apy_eff as a decimal (None: no pool); `high` above the flag level, `capped` at the cap."""

    value: float | None
    high: bool
    capped: bool
    pools_used: int
    pools_dropped: int


def pool_counts(pool: PoolYield, symbol: str, params: Apy) -> bool:
    """The filters of §4.1 other than freshness (checked by the caller on the latest observation)."""
    return (
        pool.symbol == symbol
        and pool.project in params.projects
        and pool.tvl_usd >= params.min_tvl_usd
        and pool.apy_base_pct is not None
        and pool.stablecoin is True
        and pool.exposure == "single"
    )


def mad_keep(rates: Sequence[float], k: float) -> list[bool]:
    """Which rates survive the outlier rule: drop |x − m| > k·1.4826·MAD when MAD > 0."""
    if not rates:
        return []
    centre = median(rates)
    mad = median([abs(rate - centre) for rate in rates])
    if mad <= 0:
        return [True] * len(rates)
    limit = k * MAD_TO_SIGMA * mad
    return [abs(rate - centre) <= limit for rate in rates]


def effective_apy(pools: Sequence[tuple[float, float]], params: Apy) -> EffectiveApy:
    """TVL-weighted base APY of the kept pools, `pools` = [(tvl_usd, apy_base_pct)]."""
    keep = mad_keep([rate for _, rate in pools], params.mad_k)
    kept = [pool for pool, kept in zip(pools, keep) if kept]
    total_tvl = math.fsum(tvl for tvl, _ in kept)
    if not kept or total_tvl <= 0:
        return EffectiveApy(None, False, False, 0, len(pools) - len(kept))
    value = math.fsum(tvl * rate for tvl, rate in kept) / total_tvl / 100
    high = value > params.high_flag_decimal
    capped = value > params.cap_decimal
    return EffectiveApy(min(value, params.cap_decimal), high, capped, len(kept), len(pools) - len(kept))
