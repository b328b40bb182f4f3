"""The services `syi run` knows, and the command line that starts each one."""

from __future__ import annotations

import sys

# service name -> python module run with `python -m`
SERVICES: dict[str, str] = {
    "ingest-binance": "ingest_binance",
    "ingest-defillama": "ingest_defillama",
    "ingest-fred": "ingest_fred",
    "replay-server": "replay_server",
    "ray-calc": "ray_calc",
    "syi-calc": "syi_calc",
    "ws-gateway": "ws_gateway",
    "store-timescale": "store_timescale",
    "store-clickhouse": "store_clickhouse",
    "rest-api": "rest_api",
}


def service_command(service: str, extra: list[str] | None = None) -> list[str]:
    try:
        module = SERVICES[service]
    except KeyError:
        raise SystemExit(f"unknown service {service!r}; known: {', '.join(SERVICES)}") from None
    return [sys.executable, "-m", module, *(extra or [])]
