"""Settings of store-clickhouse (environment prefix SYI_, see syi_shared.settings)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator

from syi_shared.settings import ServiceSettings

from store_clickhouse.tables import TABLE_FOR_TOPIC

_REPO_ROOT = Path(__file__).resolve().parents[3]


def default_dsn() -> str:
    """The embedded store: chDB in `<repo>/.stack/chdb` (or `$SYI_STATE_DIR/chdb`)."""
    state_dir = Path(os.environ.get("SYI_STATE_DIR", _REPO_ROOT / ".stack"))
    return f"chdb://{state_dir.resolve() / 'chdb'}"


class Settings(ServiceSettings):
    health_port: int = 9105
    # chdb:///abs/path (embedded, one process owns it) or http(s)://user:pass@host:8123/db
    clickhouse_dsn: str = Field(default_factory=default_dsn)
    # created when missing and used for every table; None keeps the DSN's database
    clickhouse_database: str | None = None
    clickhouse_consumer_group: str = "store-clickhouse"
    # every raw input (the archive a tape is rebuilt from, docs/clickhouse.md) and the index
    clickhouse_topics: list[str] = list(TABLE_FOR_TOPIC)
    # a batch is written when it holds this many messages or is this old, whichever first
    clickhouse_batch_max_messages: int = 5000
    clickhouse_batch_max_seconds: float = 1.0
    # extra librdkafka consumer properties, JSON (SYI_CONSUMER_CONFIG='{"session.timeout.ms": 10000}')
    consumer_config: dict[str, str | int | float | bool] = {}

    @field_validator("clickhouse_dsn")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("chdb://", "http://", "https://")):
            raise ValueError("SYI_CLICKHOUSE_DSN must start with chdb://, http:// or https://")
        return value

    @field_validator("clickhouse_topics")
    @classmethod
    def _stored_topics(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(TABLE_FOR_TOPIC))
        if unknown or not value or len(set(value)) != len(value):
            raise ValueError(
                f"SYI_CLICKHOUSE_TOPICS must be a non-empty subset of {list(TABLE_FOR_TOPIC)}, each once, got {value}"
            )
        return value

    @field_validator("clickhouse_batch_max_messages")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("SYI_CLICKHOUSE_BATCH_MAX_MESSAGES must be at least 1")
        return value
