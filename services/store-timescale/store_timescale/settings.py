"""store-timescale settings (environment prefix SYI_)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from syi_shared.settings import ServiceSettings
from syi_shared.topics import (
    DL_APY,
    EX_MKTCAP,
    METRICS_LIQUIDITY,
    METRICS_PEG,
    RAY_CALCULATED,
    SYI_CALCULATED,
    TRAD_TBILL,
)

DEFAULT_DSN = "postgresql://syi:syi@127.0.0.1:5432/stableyield"

# The topics this writer stores, in the order a reader would look for them.
TOPICS = (
    SYI_CALCULATED,
    RAY_CALCULATED,
    METRICS_PEG,
    METRICS_LIQUIDITY,
    DL_APY,
    EX_MKTCAP,
    TRAD_TBILL,
)


class Settings(ServiceSettings):
    postgres_dsn: str = DEFAULT_DSN  # SYI_POSTGRES_DSN
    group_id: str = "store-timescale"  # SYI_GROUP_ID
    health_port: int = 9104
    # "auto": hypertables when the timescaledb extension is available, native partitions otherwise
    timescale: Literal["auto", "on", "off"] = "auto"  # SYI_TIMESCALE
    batch_max_messages: int = Field(default=2000, ge=1)  # one COPY + upsert per table per batch
    batch_wait_seconds: float = Field(default=0.5, gt=0)  # how long a batch may wait to fill up
    partitions_ahead_months: int = Field(default=2, ge=0)  # plain mode: monthly partitions created ahead
    retention_enabled: bool = True  # drop data older than each table's retention (docs/storage.md)
    # extra librdkafka consumer properties, JSON (SYI_CONSUMER_CONFIG='{"session.timeout.ms": 10000}')
    consumer_config: dict[str, str | int | float | bool] = {}
