"""ingest-fred settings (env prefix SYI_); the key comes from FRED_API_KEY or SYI_FRED_API_KEY."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr

from syi_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    health_port: int = 9103
    fred_url: str = "https://api.stlouisfed.org"  # SYI_FRED_URL; /fred/series/observations is appended
    fred_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("FRED_API_KEY", "SYI_FRED_API_KEY", "fred_api_key")
    )
    fred_series: str = "DTB3"  # SYI_FRED_SERIES
    fred_basis: Literal["discount", "investment"] = "discount"  # DTB3 is a discount rate; DGS3MO: investment
    fred_poll_interval_s: float = 3600.0  # H.15 rates post once a business day
    fred_observations_limit: int = 10  # newest rows asked for (holidays come as ".")
    fred_http_timeout_s: float = 30.0
    retry_initial_s: float = 5.0  # after a failed poll: retry sooner, with backoff up to the interval
