"""StableYield Index methodology v3 (docs/methodology.md) as pure functions and two engines.

No I/O besides reading the methodology file, no Kafka, no clock: the batch calculator and
the streaming services drive the same `RayEngine` / `IndexEngine`, so they agree by
construction. One module per concern: params, prices, peg, liquidity, apy, ray, weights,
index, tbill, audit, state, engine.
"""

from syi_shared.methodology.engine import (
    IndexEngine,
    Position,
    RayBucket,
    RayEngine,
    bucket_end_of,
    compute_run,
)
from syi_shared.methodology.params import Methodology, MethodologyError, load_methodology
from syi_shared.methodology.state import IndexState, RayState

__all__ = [
    "IndexEngine",
    "IndexState",
    "Methodology",
    "MethodologyError",
    "Position",
    "RayBucket",
    "RayEngine",
    "RayState",
    "bucket_end_of",
    "compute_run",
    "load_methodology",
]
