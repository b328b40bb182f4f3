"""Settings both calculators share (env prefix SYI_; docs/streaming.md lists them)."""

from __future__ import annotations

from pydantic import Field

from syi_shared.settings import ServiceSettings


class StreamSettings(ServiceSettings):
    """Each calculator subclasses it (its own metrics port)."""

    metrics_port: int = 0  # /healthz and /metrics (ours + Bytewax's step metrics); 0 = none
    bytewax_api_port: int = 0  # Bytewax's own API, read by our /metrics; 0 = any free port
    # Names this calculator's checkpoint (the key of its state records) and its Kafka
    # transactional id; default: the service name. Two running copies must not share one.
    instance_id: str | None = None
    epoch_seconds: float = Field(default=1.0, gt=0)  # Bytewax epoch length (no Bytewax snapshots are kept)
    allowed_lateness_seconds: float = Field(default=2.0, ge=0)
    idle_timeout_seconds: float = Field(default=10.0, gt=0)  # a partition silent this long stops holding buckets
    progress_timeout_seconds: float = Field(default=30.0, gt=0)  # a replay's markers keep idleness off this long
    # Treat the topics as if they began at this Kafka time (ms): inputs, the output topic's
    # chain and the checkpoints before it are ignored (a backfill into a fresh run; tests).
    start_at_ms: int | None = None
    tail: bool = True  # False: stop at the end of the topics (backfills, tests)
    batch_size: int = Field(default=1000, ge=1)
    stop_timeout_seconds: float = Field(default=20.0, gt=0)  # after SIGTERM, exit anyway after this

    def instance(self, service: str) -> str:
        return self.instance_id or service

    def brokers(self) -> list[str]:
        return self.kafka_config()["bootstrap.servers"].split(",")
