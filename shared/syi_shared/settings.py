"""Settings: one pydantic-settings base, environment prefix `SYI_`, `.env` support.

Each service subclasses `ServiceSettings`; Kafka connection and security settings live in
`KafkaSettings` so every service reads them the same way (`SYI_KAFKA__BOOTSTRAP_SERVERS`
or the short form `SYI_KAFKA_BOOTSTRAP_SERVERS`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SYI_"


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None

    def client_config(self) -> dict[str, str]:
        """The librdkafka properties these settings stand for."""
        config = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol.lower(),
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password.get_secret_value() if self.sasl_password else None,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
        }
        config.update({k: str(v) for k, v in optional.items() if v is not None})
        return config


class ServiceSettings(BaseSettings):
    """Base of every service's settings."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
        populate_by_name=True,  # ServiceSettings(kafka_bootstrap_servers=...) in code and tests
    )

    kafka: KafkaSettings = KafkaSettings()
    kafka_bootstrap_servers: str | None = Field(
        default=None, validation_alias=AliasChoices("SYI_KAFKA_BOOTSTRAP_SERVERS")
    )
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    health_host: str = "127.0.0.1"
    health_port: int = 0  # each service sets its own default; 0 means "none"
    methodology: Path | None = None  # SYI_METHODOLOGY

    def kafka_config(self) -> dict[str, str]:
        kafka = self.kafka
        if self.kafka_bootstrap_servers:
            kafka = kafka.model_copy(update={"bootstrap_servers": self.kafka_bootstrap_servers})
        return kafka.client_config()
