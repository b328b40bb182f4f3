"""The topic registry (docs/topics.md): name, model, key, partitions, cleanup, retention and cadence.

Provisioning is idempotent: existing topics are left alone (their configs are brought
in line), missing ones are created, and each data topic gets its `.dlq` twin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from syi_shared.models import (
    DeadLetter,
    IndexValue,
    LiquidityMetrics,
    MarketCap,
    OrderBook,
    PegMetrics,
    PoolYield,
    PriceTick,
    ProgressMarker,
    RayRecord,
    StateRecord,
    TBill,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MINUTE_S = 60.0
HOUR_S = 3600.0


@dataclass(frozen=True)
class Topic:
    name: str
    model: type[BaseModel]
    key_format: str
    partitions: int
    cleanup_policy: str
    retention_ms: int
    producer: str
    configs: dict[str, str] = field(default_factory=dict)
    # expected cadence: a consumer whose newest message on this topic is older is degraded
    # (docs/operations.md); None for topics that may rightly stay quiet (dead letters)
    stale_after_s: float | None = None

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"

    def kafka_configs(self) -> dict[str, str]:
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            **self.configs,
        }


TOPICS: dict[str, Topic] = {
    t.name: t
    for t in (
        # Binance streams every second; DefiLlama's prices come every 5 min but Binance's keep the topic busy
        Topic("cc.prices", PriceTick, "{symbol}.{venue}", 6, "delete", 7 * DAY_MS, "ingest-binance, ingest-defillama",
              stale_after_s=MINUTE_S),
        Topic("cc.orderbook", OrderBook, "{symbol}.{venue}", 6, "delete", DAY_MS, "ingest-binance",
              stale_after_s=MINUTE_S),
        # polled every 10 / 5 min; two hours covers DefiLlama's slow CDN refreshes and retries
        Topic("dl.apy", PoolYield, "{pool}", 3, "delete", 30 * DAY_MS, "ingest-defillama", stale_after_s=2 * HOUR_S),
        Topic("ex.mktcap", MarketCap, "{symbol}", 3, "delete", 30 * DAY_MS, "ingest-defillama",
              stale_after_s=2 * HOUR_S),
        # FRED publishes on business days only: a long weekend plus a holiday is four days
        Topic("trad.tbill", TBill, "{series}", 1, "compact,delete", 5 * 365 * DAY_MS, "ingest-fred",
              stale_after_s=4 * 24 * HOUR_S),
        # the calculators publish every minute
        Topic("metrics.peg", PegMetrics, "{symbol}", 3, "delete", 90 * DAY_MS, "ray-calc", stale_after_s=3 * MINUTE_S),
        Topic("metrics.liquidity", LiquidityMetrics, "{symbol}", 3, "delete", 90 * DAY_MS, "ray-calc",
              stale_after_s=3 * MINUTE_S),
        Topic("ray.calculated", RayRecord, "{symbol}", 3, "delete", 90 * DAY_MS, "ray-calc",
              stale_after_s=3 * MINUTE_S),
        Topic("syi.calculated", IndexValue, "{index_id}", 1, "delete", 5 * 365 * DAY_MS, "syi-calc",
              stale_after_s=3 * MINUTE_S),
    )
}

DLQ_RETENTION_MS = 30 * DAY_MS

# The topics the raw data arrives on (what a tape holds and a progress marker covers).
RAW_INPUT_TOPICS = ("cc.prices", "cc.orderbook", "dl.apy", "ex.mktcap", "trad.tbill")

# A tape player's progress markers (docs/streaming.md): one partition keeps them in order.
PROGRESS_TOPIC = Topic("syi.progress", ProgressMarker, "{source}", 1, "delete", 7 * DAY_MS, "tape player")


# Each calculator's checkpoint (syi_shared.checkpoint): full snapshots in chunks and one close
# mark per bucket, keyed by instance id. Kept as long as the longest-lived inputs (dl.apy,
# ex.mktcap) so a recomputation can start from a snapshot anywhere in them; one partition keeps
# the records in order; max.message.bytes stated, since a snapshot chunk is sized under it.
# No .dlq twin: only the calculator itself writes and reads it.
STATE_SERVICES = ("ray-calc", "syi-calc")
STATE_TOPICS: dict[str, Topic] = {
    t.name: t
    for t in (
        Topic(f"state.{service}", StateRecord, "{instance}", 1, "delete", 30 * DAY_MS, service,
              configs={"max.message.bytes": "1048588"})
        for service in STATE_SERVICES
    )
}


def state_topic(service: str) -> str:
    """The state topic of a calculator, e.g. `state.syi-calc`."""
    name = f"state.{service}"
    if name not in STATE_TOPICS:
        raise KeyError(f"no state topic for {service!r}; known: {', '.join(STATE_SERVICES)}")
    return name


def dlq_topic(source: Topic) -> Topic:
    return Topic(source.dlq, DeadLetter, "original key", 1, "delete", DLQ_RETENTION_MS, "any consumer")


def all_topics() -> list[Topic]:
    """Every data topic followed by every dead-letter topic, then the progress and state topics."""
    return [*TOPICS.values(), *(dlq_topic(t) for t in TOPICS.values()), PROGRESS_TOPIC, *STATE_TOPICS.values()]


def topic(name: str) -> Topic:
    try:
        return TOPICS[name] if name in TOPICS else STATE_TOPICS[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; known: {', '.join(TOPICS)}") from None
