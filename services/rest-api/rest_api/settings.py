"""rest-api settings (environment prefix SYI_)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from syi_shared.settings import ServiceSettings

DEFAULT_DSN = "postgresql://syi:syi@127.0.0.1:5432/stableyield"


class Settings(ServiceSettings):
    postgres_dsn: str = DEFAULT_DSN  # SYI_POSTGRES_DSN
    api_host: str = "127.0.0.1"  # SYI_API_HOST
    api_port: int = 8000  # SYI_API_PORT
    # SYI_API_KEYS: "key1,key2:120" — a key may carry its own requests-per-minute after a colon.
    # Empty (and no JWT secret) means no authentication: the embedded default on 127.0.0.1.
    api_keys: SecretStr = SecretStr("")
    api_jwt_secret: SecretStr | None = None  # SYI_API_JWT_SECRET: HS256 bearer tokens, `sub` names the client
    api_rate_limit_per_minute: int = Field(default=600, ge=1)  # per key or token subject; bursts up to this
    ws_public_url: str = "ws://127.0.0.1:8002/stream/syi/live"  # the gateway the live page connects to
    stale_after_seconds: float = Field(default=300.0, gt=0)  # /live says stale past this age
    index_id: str = "SYI"
    # the newest value is re-read at most this often (it changes once a minute); 0 reads it every time
    current_cache_seconds: float = Field(default=1.0, ge=0)
    db_pool_size: int = Field(default=10, ge=1)

    @field_validator("api_keys")
    @classmethod
    def _keys_parse(cls, value: SecretStr) -> SecretStr:
        parse_api_keys(value.get_secret_value())  # fail at start-up, naming the setting
        return value

    def key_limits(self) -> dict[str, int]:
        """API key -> requests per minute."""
        return parse_api_keys(self.api_keys.get_secret_value(), self.api_rate_limit_per_minute)

    @property
    def auth_required(self) -> bool:
        return bool(self.key_limits()) or self.api_jwt_secret is not None


def parse_api_keys(text: str, default_rate: int = 600) -> dict[str, int]:
    keys: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, rate = item.partition(":")
        if not key or (rate and not rate.isdigit()) or rate == "0":
            raise ValueError("SYI_API_KEYS must look like 'key1,key2:120' (optional requests per minute after ':')")
        keys[key] = int(rate) if rate else default_rate
    return keys
