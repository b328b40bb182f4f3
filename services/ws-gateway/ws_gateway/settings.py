"""ws-gateway settings (environment prefix SYI_, e.g. SYI_WS_PORT, SYI_WS_API_KEYS)."""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import Field, model_validator

from syi_shared.settings import ServiceSettings


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


class Settings(ServiceSettings):
    # The embedded default (`make up`): loopback only, no keys.
    ws_host: str = "127.0.0.1"
    ws_port: int = Field(default=8002, ge=0, le=65535)  # 0 picks a free port (tests)
    ws_api_keys: str = ""  # comma-separated; when set, every stream connection needs one
    ws_allowed_origins: str = ""  # comma-separated; empty allows every Origin
    ws_max_connections: int = Field(default=10_000, ge=1)
    ws_max_connections_per_ip: int = Field(default=200, ge=0)  # 0 = no per-IP limit
    ws_max_message_bytes: int = Field(default=4096, ge=64)  # largest frame a client may send
    # Slow clients: once this many bytes wait in a client's send buffer (beyond what the kernel holds),
    # it gets only the newest value, and it is closed (4000) when it stays behind this long.
    ws_client_buffer_bytes: int = Field(default=64 * 1024, ge=1024)
    # The kernel's send buffer per client socket (SO_SNDBUF; Linux doubles it). Bounded so a stalled
    # client is noticed after ~100 KiB instead of the ~4 MiB loopback autotuning grows to; 0 = OS default.
    ws_socket_send_buffer_bytes: int = Field(default=64 * 1024, ge=0)
    ws_slow_client_timeout_seconds: float = Field(default=30.0, gt=0)
    ws_ping_interval_seconds: float = Field(default=20.0, gt=0)  # also the pong timeout
    ws_close_timeout_seconds: float = Field(default=10.0, gt=0)
    ws_tls_cert: Path | None = None  # PEM certificate chain; with ws_tls_key, serves wss://
    ws_tls_key: Path | None = None
    # The constituents snapshot is the newest ray.calculated record per symbol seen in this window.
    ws_constituents_lookback_seconds: float = Field(default=900.0, ge=0)
    # A client may resume the index stream from any position of this window (?since=, ?since_seq=);
    # the gateway reads that much of syi.calculated when it starts and keeps it in memory.
    ws_resume_window_seconds: float = Field(default=24 * 3600.0, gt=0)

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.ws_tls_cert is None) != (self.ws_tls_key is None):
            raise ValueError("SYI_WS_TLS_CERT and SYI_WS_TLS_KEY must be set together")
        for name, path in (("SYI_WS_TLS_CERT", self.ws_tls_cert), ("SYI_WS_TLS_KEY", self.ws_tls_key)):
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: no such file {path}")
        return self

    @property
    def api_keys(self) -> tuple[str, ...]:
        return _csv(self.ws_api_keys)

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        return _csv(self.ws_allowed_origins)

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.ws_tls_cert is None or self.ws_tls_key is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.ws_tls_cert, self.ws_tls_key)
        return context
