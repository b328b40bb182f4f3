"""`python -m store_timescale`: settings → logging → run."""

from __future__ import annotations

import asyncio

from syi_shared.logs import configure_logging

from store_timescale.settings import Settings
from store_timescale.worker import run


def main() -> None:
    settings = Settings()
    configure_logging("store-timescale", settings.log_level, settings.log_format)
    # 1 when the final write failed: those messages stay uncommitted, read again at the next start
    raise SystemExit(0 if asyncio.run(run(settings)) else 1)


if __name__ == "__main__":
    main()
