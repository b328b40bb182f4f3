"""Order-independent statistics the formulas share (median, exact sums).

`math.fsum` is correctly rounded, so a sum does not depend on the order of its terms:
two implementations, or two message orders, get the same bits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def median(values: Sequence[float]) -> float:
    """Median; an even count gives the mean of the two middle values (docs/methodology.md §2.3)."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def exact_sum(values: Iterable[float]) -> float:
    return math.fsum(values)


def clip(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return min(high, max(low, value))


# Exact running sums for the rolling windows: every finite double is an integer multiple of
# 2**-1074, so scaling by 2**1074 makes adding and removing a value exact integer arithmetic.
_SCALE_BITS = 1074


def to_fixed(value: float) -> int:
    numerator, denominator = value.as_integer_ratio()
    return numerator << (_SCALE_BITS - denominator.bit_length() + 1)


def fixed_mean(total: int, count: int) -> float:
    """Correctly rounded total / count (int / int true division rounds correctly)."""
    return total / (count << _SCALE_BITS)


def fixed_population_variance(total: int, total_sq: int, count: int) -> float:
    """Exact n·Σx² − (Σx)² over n², rounded once: no cancellation error.

    `total` is Σ to_fixed(x) and `total_sq` is Σ to_fixed(x)**2 (scale 2**2148).
    """
    numerator = count * total_sq - total * total
    return numerator / ((count * count) << (2 * _SCALE_BITS))
