"""`python -m ingest_defillama` (or `syi run ingest-defillama`): settings → logging → run."""

from __future__ import annotations

import asyncio

from ingest_defillama import telemetry
from ingest_defillama.settings import Settings
from ingest_defillama.worker import DefiLlamaIngester
from syi_shared.logs import configure_logging
from syi_shared.shutdown import stop_on_signal
from syi_shared.telemetry import serve_telemetry


async def serve(settings: Settings) -> None:
    stop = stop_on_signal()
    ingester = DefiLlamaIngester(settings)
    serve_telemetry(settings.health_host, settings.health_port, ingester.health.report)
    await ingester.run(stop)


def main() -> None:
    settings = Settings()
    log = configure_logging(telemetry.SERVICE, settings.log_level, settings.log_format)
    log.info("starting", yields=settings.defillama_yields_url, stablecoins=settings.defillama_stablecoins_url,
             symbols=settings.defillama_symbols, cryptocompare=settings.cryptocompare_api_key is not None,
             health_port=settings.health_port)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
