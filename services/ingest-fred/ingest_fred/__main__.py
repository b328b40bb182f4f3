"""`python -m ingest_fred` (or `syi run ingest-fred`): settings → logging → run."""

from __future__ import annotations

import asyncio

from ingest_fred import telemetry
from ingest_fred.settings import Settings
from ingest_fred.worker import FredIngester
from syi_shared.logs import configure_logging
from syi_shared.shutdown import stop_on_signal
from syi_shared.telemetry import serve_telemetry


async def serve(settings: Settings) -> None:
    stop = stop_on_signal()
    ingester = FredIngester(settings)
    serve_telemetry(settings.health_host, settings.health_port, ingester.health.report)
    await ingester.run(stop)


def main() -> None:
    settings = Settings()
    log = configure_logging(telemetry.SERVICE, settings.log_level, settings.log_format)
    log.info("starting", url=settings.fred_url, series=settings.fred_series,
             api_key_set=settings.fred_api_key is not None, health_port=settings.health_port)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
