"""The topic registry (docs/topics.md): every topic's name, model, key, partitions, cleanup,
retention and cadence, and which services write and read it.

This module is the one place that says who produces and who consumes a topic: services take
their topic names from the constants below (never a string literal), and docs/topics.md's
table is generated from the registry (`markdown_table`, tools/gen_topic_table.py; a test keeps
the two equal). Service names are the directory names under services/; `CLI` is the `syi`
command.

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
    RestatementRequest,
    StateRecord,
    TBill,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
YEAR_MS = 365 * DAY_MS
MINUTE_S = 60.0
HOUR_S = 3600.0

# Topic names: the constant is the name upper-cased, dots as underscores.
CC_PRICES = "cc.prices"
CC_ORDERBOOK = "cc.orderbook"
DL_APY = "dl.apy"
EX_MKTCAP = "ex.mktcap"
TRAD_TBILL = "trad.tbill"
METRICS_PEG = "metrics.peg"
METRICS_LIQUIDITY = "metrics.liquidity"
RAY_CALCULATED = "ray.calculated"
SYI_CALCULATED = "syi.calculated"
SYI_PROGRESS = "syi.progress"
SYI_RESTATEMENTS = "syi.restatements"

# The `syi` command (cli/): `syi tape play` writes tapes' raw inputs and progress markers;
# `syi verify` reads syi.calculated (`--recompute`: syi-calc's inputs and checkpoint too).
# `syi restate` reads syi.calculated and submits restatement requests.
# `syi tape record --topics` may read any topic and is not listed.
CLI = "syi (cli)"


@dataclass(frozen=True)
class Topic:
    name: str
    model: type[BaseModel]
    key_format: str
    partitions: int
    cleanup_policy: str
    retention_ms: int
    producers: tuple[str, ...]  # services that write it (service directory names, or CLI)
    consumers: tuple[str, ...]  # services that read it, including a writer reading its own tail
    about: str = ""  # what one message is, for docs/topics.md's table
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
        Topic(CC_PRICES, PriceTick, "{symbol}.{venue}", 6, "delete", 7 * DAY_MS,
              producers=("ingest-binance", "ingest-defillama", CLI), consumers=("ray-calc", "store-clickhouse"),
              about="a price tick (bid, ask, mid)", stale_after_s=MINUTE_S),
        Topic(CC_ORDERBOOK, OrderBook, "{symbol}.{venue}", 6, "delete", DAY_MS,
              producers=("ingest-binance", CLI), consumers=("ray-calc", "store-clickhouse"),
              about="a top-of-book snapshot", stale_after_s=MINUTE_S),
        # polled every 10 / 5 min; two hours covers DefiLlama's slow CDN refreshes and retries
        Topic(DL_APY, PoolYield, "{pool}", 3, "delete", 30 * DAY_MS,
              producers=("ingest-defillama", CLI), consumers=("ray-calc", "store-timescale", "store-clickhouse"),
              about="a lending pool's yield", stale_after_s=2 * HOUR_S),
        Topic(EX_MKTCAP, MarketCap, "{symbol}", 3, "delete", 30 * DAY_MS,
              producers=("ingest-defillama", CLI), consumers=("syi-calc", "store-timescale", "store-clickhouse", CLI),
              about="circulating market cap and USD price", stale_after_s=2 * HOUR_S),
        # FRED publishes on business days only: a long weekend plus a holiday is four days;
        # ingest-fred reads its own topic back at start-up (the last date it published).
        # `delete`, not compacted: a replay or restatement needs every rate as it was known then.
        Topic(TRAD_TBILL, TBill, "{series}", 1, "delete", 5 * YEAR_MS,
              producers=("ingest-fred", CLI),
              consumers=("syi-calc", "store-timescale", "store-clickhouse", "ingest-fred", CLI),
              about="a 3-month T-bill observation", stale_after_s=4 * 24 * HOUR_S),
        # the calculators publish every minute, and read their outputs' tails when they start
        # (what is already published, docs/streaming.md)
        Topic(METRICS_PEG, PegMetrics, "{symbol}", 3, "delete", 90 * DAY_MS,
              producers=("ray-calc",), consumers=("store-timescale", "ray-calc"),
              about="a coin's peg metrics for one minute", stale_after_s=3 * MINUTE_S),
        Topic(METRICS_LIQUIDITY, LiquidityMetrics, "{symbol}", 3, "delete", 90 * DAY_MS,
              producers=("ray-calc",), consumers=("store-timescale", "ray-calc"),
              about="a coin's order-book depth for one minute", stale_after_s=3 * MINUTE_S),
        Topic(RAY_CALCULATED, RayRecord, "{symbol}", 3, "delete", 90 * DAY_MS,
              producers=("ray-calc",), consumers=("syi-calc", "store-timescale", "ws-gateway", "ray-calc", CLI),
              about="a coin's risk-adjusted yield for one minute", stale_after_s=3 * MINUTE_S),
        Topic(SYI_CALCULATED, IndexValue, "{index_id}", 1, "delete", 5 * YEAR_MS,
              producers=("syi-calc",),
              consumers=("store-timescale", "store-clickhouse", "ws-gateway", "syi-calc", CLI),
              about="the published index for one minute", stale_after_s=3 * MINUTE_S),
        # `syi restate` asks syi-calc, the index's only producer, to publish a revision (docs/topics.md,
        # "Revisions"): kept as long as the revisions they made; rightly quiet for months
        Topic(SYI_RESTATEMENTS, RestatementRequest, "{bucket_end}", 1, "delete", 5 * YEAR_MS,
              producers=(CLI,), consumers=("syi-calc",),
              about="a request to publish a revision of one minute's index"),
    )
}

DLQ_RETENTION_MS = 30 * DAY_MS

# The topics the raw data arrives on (what a tape holds and a progress marker covers).
RAW_INPUT_TOPICS = (CC_PRICES, CC_ORDERBOOK, DL_APY, EX_MKTCAP, TRAD_TBILL)

# The consumers that validate what they read and dead-letter what fails (syi_shared.dlq): they
# write `<topic>.dlq`. Nothing in the system reads a dead-letter topic: people do (kcat,
# docs/operations.md).
DEAD_LETTER_WRITERS = ("ray-calc", "syi-calc", "store-timescale", "store-clickhouse", "ws-gateway")

# A tape player's progress markers (docs/streaming.md): one partition keeps them in order.
PROGRESS_TOPIC = Topic(SYI_PROGRESS, ProgressMarker, "{source}", 1, "delete", 7 * DAY_MS,
                       producers=(CLI,), consumers=("ray-calc", "syi-calc", CLI),
                       about="a tape player's progress marker (docs/streaming.md)")


# Each calculator's checkpoint (syi_shared.checkpoint): full snapshots in chunks and one close
# mark per bucket, keyed by instance id. Kept as long as the longest-lived inputs (dl.apy,
# ex.mktcap) so a recomputation can start from a snapshot anywhere in them; one partition keeps
# the records in order; max.message.bytes stated, since a snapshot chunk is sized under it.
# No .dlq twin: only the calculator itself writes and reads it (and `syi verify --recompute`
# syi-calc's).
STATE_SERVICES = ("ray-calc", "syi-calc")
_STATE_READERS = {"ray-calc": ("ray-calc",), "syi-calc": ("syi-calc", CLI)}
STATE_TOPICS: dict[str, Topic] = {
    t.name: t
    for t in (
        Topic(f"state.{service}", StateRecord, "{instance}", 1, "delete", 30 * DAY_MS,
              producers=(service,), consumers=_STATE_READERS[service],
              about="a calculator's checkpoint: snapshot chunks and one close mark per bucket "
                    "(docs/streaming.md, \"Exactly once\")",
              configs={"max.message.bytes": "1048588"})
        for service in STATE_SERVICES
    )
}


@dataclass(frozen=True)
class Store:
    """A database a store writer fills from topics. A service that reads its tables depends on
    the writer as much as on a topic: its data is only as fresh as the writer's lag."""

    writer: str  # the service writing the tables
    database: str
    readers: tuple[str, ...]  # services reading the tables

    def topics(self) -> tuple[str, ...]:
        """The topics the writer stores (those it consumes)."""
        return tuple(t.name for t in TOPICS.values() if self.writer in t.consumers)


STORES: tuple[Store, ...] = (
    Store("store-timescale", "PostgreSQL / TimescaleDB", readers=("rest-api",)),
    # ad-hoc analysis and the raw-input archive (`syi tape record --from-archive`); no service reads it
    Store("store-clickhouse", "ClickHouse", readers=()),
)


def state_topic(service: str) -> str:
    """The state topic of a calculator, e.g. `state.syi-calc`."""
    name = f"state.{service}"
    if name not in STATE_TOPICS:
        raise KeyError(f"no state topic for {service!r}; known: {', '.join(STATE_SERVICES)}")
    return name


def dlq_topic(source: Topic) -> Topic:
    writers = tuple(service for service in source.consumers if service in DEAD_LETTER_WRITERS)
    return Topic(source.dlq, DeadLetter, "original key", 1, "delete", DLQ_RETENTION_MS,
                 producers=writers, consumers=(),
                 about="a message that failed validation, with the reason")


def all_topics() -> list[Topic]:
    """Every data topic followed by every dead-letter topic, then the progress and state topics."""
    return [*TOPICS.values(), *(dlq_topic(t) for t in TOPICS.values()), PROGRESS_TOPIC, *STATE_TOPICS.values()]


def topic(name: str) -> Topic:
    try:
        return TOPICS[name] if name in TOPICS else STATE_TOPICS[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; known: {', '.join(TOPICS)}") from None


def producers_of(name: str) -> tuple[str, ...]:
    """Who writes topic `name` (a data, dead-letter, progress or state topic)."""
    return _by_name()[name].producers


def consumers_of(name: str) -> tuple[str, ...]:
    """Who reads topic `name` (a data, dead-letter, progress or state topic)."""
    return _by_name()[name].consumers


def _by_name() -> dict[str, Topic]:
    return {t.name: t for t in all_topics()}


# --------------------------------------------------------------------------- docs/topics.md

TABLE_BEGIN = "<!-- topic-table:begin (generated from shared/syi_shared/topics.py: python tools/gen_topic_table.py) -->"
TABLE_END = "<!-- topic-table:end -->"


def _retention(t: Topic) -> str:
    ms = t.retention_ms
    if ms % YEAR_MS == 0:
        text = f"{ms // YEAR_MS} year{'s' if ms != YEAR_MS else ''}"
    elif ms % DAY_MS == 0:
        text = f"{ms // DAY_MS} day{'s' if ms != DAY_MS else ''}"
    else:
        text = f"{ms / HOUR_MS:g} hours"
    return f"{text} (compacted)" if "compact" in t.cleanup_policy else text


def _names(services: tuple[str, ...]) -> str:
    return ", ".join(services) if services else "—"


def _row(name: str, t: Topic, producers: str, consumers: str) -> str:
    key = f"`{t.key_format}`" if "{" in t.key_format else t.key_format
    return f"| {name} | {key} | {t.about} | {t.partitions} | {_retention(t)} | {producers} | {consumers} |"


def markdown_table() -> str:
    """docs/topics.md's topic table and store table, between their markers."""
    lines = [
        TABLE_BEGIN,
        "| topic | key | one message is | partitions | retention | written by | read by |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [_row(f"`{t.name}`", t, _names(t.producers), _names(t.consumers)) for t in TOPICS.values()]
    dlq = dlq_topic(next(iter(TOPICS.values())))
    lines.append(_row("`<topic>.dlq`", dlq, "the topic's readers that validate: " + _names(DEAD_LETTER_WRITERS),
                      "people (kcat, docs/operations.md)"))
    lines.append(_row(f"`{PROGRESS_TOPIC.name}`", PROGRESS_TOPIC, _names(PROGRESS_TOPIC.producers),
                      _names(PROGRESS_TOPIC.consumers)))
    lines += [_row(f"`{t.name}`", t, _names(t.producers), _names(t.consumers)) for t in STATE_TOPICS.values()]
    lines += [
        "",
        "Some services read a store writer's tables rather than a topic:",
        "",
        "| store | database | tables from | read by |",
        "|---|---|---|---|",
    ]
    lines += [f"| {s.writer} | {s.database} | {', '.join(f'`{name}`' for name in s.topics())} | "
              f"{_names(s.readers) if s.readers else 'no service (ad-hoc queries)'} |" for s in STORES]
    lines.append(TABLE_END)
    return "\n".join(lines)


def replace_table(text: str) -> str:
    """`text` (docs/topics.md) with the generated table between the markers."""
    start, end = text.index(TABLE_BEGIN), text.index(TABLE_END) + len(TABLE_END)
    return text[:start] + markdown_table() + text[end:]
