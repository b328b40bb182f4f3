"""ingest-defillama settings (env prefix SYI_); CryptoCompare is on only with its key."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import SecretStr, field_validator
from pydantic_settings import NoDecode

from syi_shared.settings import ServiceSettings

CANDIDATES = ["USDT", "USDC", "DAI", "TUSD", "FRAX", "USDP"]  # default universe, docs/methodology.md §1


class Settings(ServiceSettings):
    health_port: int = 9102
    defillama_yields_url: str = "https://yields.llama.fi"  # SYI_DEFILLAMA_YIELDS_URL (GET /pools)
    defillama_stablecoins_url: str = "https://stablecoins.llama.fi"  # SYI_DEFILLAMA_STABLECOINS_URL
    defillama_symbols: Annotated[list[str], NoDecode] = CANDIDATES  # SYI_DEFILLAMA_SYMBOLS=USDT,USDC,...
    defillama_pools_interval_s: float = 600.0  # the /pools CDN refreshes about every 35 min
    defillama_stablecoins_interval_s: float = 300.0  # the handler caches 10 min
    defillama_http_timeout_s: float = 60.0  # read timeout: /pools is ~11 MB
    retry_initial_s: float = 5.0  # after a failed poll: retry sooner, with backoff up to the interval
    cryptocompare_url: str = "https://min-api.cryptocompare.com"  # SYI_CRYPTOCOMPARE_URL
    cryptocompare_api_key: SecretStr | None = None  # SYI_CRYPTOCOMPARE_API_KEY; unset = CryptoCompare off
    cryptocompare_interval_s: float = 60.0

    @field_validator("defillama_symbols", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().strip("[]").replace('"', "").split(",")
        return [str(symbol).strip().upper() for symbol in value if str(symbol).strip()]

    @field_validator("defillama_symbols")
    @classmethod
    def _some(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("SYI_DEFILLAMA_SYMBOLS is empty: name at least one stablecoin, e.g. USDC")
        return list(dict.fromkeys(value))
