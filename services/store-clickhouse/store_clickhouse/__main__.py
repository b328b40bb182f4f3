"""`python -m store_clickhouse`: settings → logging → run."""

from __future__ import annotations

from syi_shared.logs import configure_logging

from store_clickhouse.settings import Settings
from store_clickhouse.telemetry import SERVICE
from store_clickhouse.worker import run


def main() -> None:
    settings = Settings()
    configure_logging(SERVICE, settings.log_level, settings.log_format)
    raise SystemExit(run(settings))


if __name__ == "__main__":
    main()
