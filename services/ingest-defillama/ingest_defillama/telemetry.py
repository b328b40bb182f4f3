"""ingest-defillama's sources and what /healthz reports (metrics live in syi_shared.source_health)."""

from __future__ import annotations

from syi_shared.source_health import SourceHealth
from syi_shared.topics import CC_PRICES, DL_APY, EX_MKTCAP

SERVICE = "ingest-defillama"
POOLS = "defillama_pools"
STABLECOINS = "defillama_stablecoins"
CRYPTOCOMPARE = "cryptocompare"


class Health(SourceHealth):
    """Per polled source: last success, and how old it may get (about two poll intervals).

    /healthz is SourceHealth's report: {"status", "reasons", "sources": {source: {"state",
    "last_success_age_s"}}, "disabled", "kafka"}; CryptoCompare without its key is disabled, not degraded.
    """

    def __init__(self) -> None:
        super().__init__(SERVICE, topics=(DL_APY, EX_MKTCAP, CC_PRICES))

    def watch(self, source: str, interval_s: float) -> None:
        self.stale_after_s[source] = 2 * interval_s + 60
