"""`python -m ws_gateway`: settings -> logging -> run."""

from __future__ import annotations

import asyncio

from syi_shared.logs import configure_logging
from ws_gateway.gateway import run
from ws_gateway.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging("ws-gateway", settings.log_level, settings.log_format)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
