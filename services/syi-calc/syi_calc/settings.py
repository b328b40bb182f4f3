"""syi-calc settings (env prefix SYI_; docs/streaming.md lists them all)."""

from __future__ import annotations

from syi_shared.streaming.settings import StreamSettings


class Settings(StreamSettings):
    metrics_port: int = 3032  # /healthz and /metrics (SYI_METRICS_PORT)
