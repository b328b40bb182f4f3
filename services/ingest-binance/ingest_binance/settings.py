"""ingest-binance settings (env prefix SYI_)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import field_validator
from pydantic_settings import NoDecode

from syi_shared.settings import ServiceSettings

# the candidates' USDT books (docs/ingestion.md); FDUSD is not an index candidate but its book is published too
DEFAULT_PAIRS = ["USDCUSDT", "FDUSDUSDT", "TUSDUSDT", "USDPUSDT", "DAIUSDT"]


class Settings(ServiceSettings):
    health_port: int = 9101
    binance_rest_url: str = "https://data-api.binance.vision"  # SYI_BINANCE_REST_URL (market-data-only host)
    binance_ws_url: str = "wss://data-stream.binance.vision"  # SYI_BINANCE_WS_URL; /stream?streams=... is appended
    binance_pairs: Annotated[list[str], NoDecode] = DEFAULT_PAIRS  # SYI_BINANCE_PAIRS=USDCUSDT,DAIUSDT
    binance_depth_levels: int = 20  # levels per side published to cc.orderbook
    binance_publish_interval_s: float = 1.0  # at most one cc.prices and one cc.orderbook per pair per interval
    binance_rest_poll_interval_s: float = 2.0  # REST polling cadence while the stream is down
    binance_fallback_after_s: float = 5.0  # stream silent this long: poll REST until it delivers again
    binance_stream_idle_timeout_s: float = 30.0  # no frame at all this long: the connection is dead, reconnect
    binance_ws_max_age_s: float = 23.5 * 3600  # renew before Binance's 24 h cut
    binance_reconnect_initial_s: float = 0.5  # jittered exponential backoff between failed connects...
    binance_reconnect_max_s: float = 60.0  # ...capped here
    binance_http_timeout_s: float = 10.0
    binance_stale_after_s: float = 60.0  # health turns "degraded" when nothing arrived for this long

    @field_validator("binance_pairs", mode="before")
    @classmethod
    def _split_pairs(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            value = value.strip("[]").replace('"', "").split(",")
        return [str(pair).strip().upper() for pair in value if str(pair).strip()]

    @field_validator("binance_pairs")
    @classmethod
    def _some_pairs(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("SYI_BINANCE_PAIRS is empty: name at least one pair, e.g. USDCUSDT")
        return list(dict.fromkeys(value))
