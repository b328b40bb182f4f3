"""`python -m ingest_binance` (or `syi run ingest-binance`): settings → logging → run."""

from __future__ import annotations

import asyncio
import sys

from ingest_binance import telemetry
from ingest_binance.settings import Settings
from ingest_binance.worker import BinanceIngester, ConfigError
from syi_shared.logs import configure_logging
from syi_shared.shutdown import stop_on_signal
from syi_shared.telemetry import serve_telemetry


async def serve(settings: Settings) -> None:
    stop = stop_on_signal()
    ingester = BinanceIngester(settings)
    serve_telemetry(settings.health_host, settings.health_port, ingester.health.report)
    await ingester.run(stop)


def main() -> None:
    settings = Settings()
    log = configure_logging(telemetry.SERVICE, settings.log_level, settings.log_format)
    log.info("starting", rest=settings.binance_rest_url, ws=settings.binance_ws_url, pairs=settings.binance_pairs,
             health_port=settings.health_port)
    try:
        asyncio.run(serve(settings))
    except ConfigError as exc:
        log.error("config_error", error=str(exc))
        sys.exit(2)


if __name__ == "__main__":
    main()
