"""Where every `syi` command finds Kafka, PostgreSQL and the local stack's state: one place.

`syi stack up` runs its broker on SYI_KAFKA_PORT and PostgreSQL on SYI_PG_PORT, and hands its
services SYI_KAFKA_BOOTSTRAP_SERVERS / SYI_POSTGRES_DSN built from them. Every other command
resolves the same variables the same way, so `SYI_KAFKA_PORT=19092 syi verify --topic ...` reads
the broker that `SYI_KAFKA_PORT=19092 syi stack up` started, never 127.0.0.1:9092 behind the
user's back. The broker, first found wins:

1. `--bootstrap` on the command line;
2. SYI_KAFKA_BOOTSTRAP_SERVERS (or SYI_KAFKA__BOOTSTRAP_SERVERS), what every service reads;
3. 127.0.0.1:SYI_KAFKA_PORT, the local stack's broker;
4. 127.0.0.1:9092.

PostgreSQL: SYI_POSTGRES_DSN, else the local stack's cluster on SYI_PG_PORT. Like the services'
settings, a `.env` file in the working directory counts as environment.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from syi_cli.paths import REPO_ROOT
from syi_shared.settings import ServiceSettings

DEFAULT_KAFKA_PORT = 9092
DEFAULT_PG_PORT = 5432
BROKER_TIMEOUT_S = 10.0  # a broker that does not answer metadata in this long is not there


class StackSettings(BaseSettings):
    """The local stack's own knobs (SYI_KAFKA_PORT, SYI_PG_PORT, SYI_STATE_DIR)."""

    model_config = SettingsConfigDict(env_prefix="SYI_", env_file=".env", env_file_encoding="utf-8",
                                      extra="ignore")

    kafka_port: int = DEFAULT_KAFKA_PORT
    pg_port: int = DEFAULT_PG_PORT
    state_dir: Path = REPO_ROOT / ".stack"
    postgres_dsn: str | None = None  # what store-timescale and rest-api read; else the stack's cluster


@dataclass(frozen=True)
class Endpoint:
    address: str
    source: str  # what chose it: "--bootstrap", an environment variable's name, or "default"

    def __str__(self) -> str:
        return f"{self.address} ({self.source})"


@dataclass(frozen=True)
class CliSettings:
    stack: StackSettings
    kafka: Endpoint  # the broker commands read and write
    local_kafka: Endpoint  # the local stack's broker (SYI_KAFKA_PORT), where `syi stack up` runs one
    postgres: Endpoint
    service: ServiceSettings  # for syi_shared's Kafka factories: this broker, plus any SASL/SSL settings

    @property
    def service_env(self) -> dict[str, str]:
        """What a service started by the CLI needs to reach the same broker and database."""
        return {"SYI_KAFKA_BOOTSTRAP_SERVERS": self.kafka.address, "SYI_POSTGRES_DSN": self.postgres.address}

    def announce(self, say: Callable[[str], None]) -> None:
        """Say which broker this command uses, and when SYI_KAFKA_PORT points at another one."""
        say(f"syi kafka: {self.kafka}")
        if self.local_kafka.source != "default" and self.kafka.address != self.local_kafka.address:
            say(f"syi kafka: {self.local_kafka.source} ({self.local_kafka.address}) is not used: "
                f"{self.kafka.source} comes first")

    def announce_stack(self, say: Callable[[str], None]) -> None:
        """For `syi stack ...`: the stack runs its own broker; warn when other commands would read another."""
        say(f"syi kafka: {self.local_kafka}")
        if self.kafka.address != self.local_kafka.address:
            say(f"syi kafka: note: {self.kafka.source} is {self.kafka.address}, so other syi commands "
                f"and services started by hand read that broker, not this stack's")


def _source(name: str) -> str:
    return name if name in os.environ else f"{name} in .env"


def cli_settings(bootstrap: str | None = None) -> CliSettings:
    """The settings of every `syi` command; `bootstrap` is its --bootstrap option, if any."""
    stack = StackSettings()
    service = ServiceSettings()
    port_source = _source("SYI_KAFKA_PORT") if "kafka_port" in stack.model_fields_set else "default"
    local = Endpoint(f"127.0.0.1:{stack.kafka_port}", port_source)
    if bootstrap:
        kafka = Endpoint(bootstrap, "--bootstrap")
    elif service.kafka_bootstrap_servers:
        kafka = Endpoint(service.kafka_bootstrap_servers, _source("SYI_KAFKA_BOOTSTRAP_SERVERS"))
    elif "bootstrap_servers" in service.kafka.model_fields_set:
        kafka = Endpoint(service.kafka.bootstrap_servers, _source("SYI_KAFKA__BOOTSTRAP_SERVERS"))
    else:
        kafka = local
    if stack.postgres_dsn:
        postgres = Endpoint(stack.postgres_dsn, _source("SYI_POSTGRES_DSN"))
    else:
        from syi_cli.stack.postgres import local_dsn

        pg_source = _source("SYI_PG_PORT") if "pg_port" in stack.model_fields_set else "default"
        postgres = Endpoint(local_dsn(stack.pg_port), pg_source)
    return CliSettings(stack, kafka, local, postgres,
                       service.model_copy(update={"kafka_bootstrap_servers": kafka.address}))


def broker_problem(settings: CliSettings, timeout: float = BROKER_TIMEOUT_S) -> str | None:
    """Why the broker cannot be used (nothing listens, or no Kafka answer), or None when it answers."""
    if not any(_listening(host, port) for host, port in _addresses(settings.kafka.address)):
        return f"nothing listens at {settings.kafka}"
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:  # log_level 0: librdkafka's own connection errors would only repeat the message below
        AdminClient({**settings.service.kafka_config(), "log_level": 0}).list_topics(timeout=timeout)
    except KafkaException as exc:
        return f"no Kafka broker answers at {settings.kafka} within {timeout:.0f} s ({exc.args[0].str()})"
    return None


def topic_exists(settings: CliSettings, topic: str, timeout: float = BROKER_TIMEOUT_S) -> bool:
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({**settings.service.kafka_config(), "log_level": 0}).list_topics(timeout=timeout)
    return topic in metadata.topics and metadata.topics[topic].error is None


def _addresses(bootstrap: str) -> list[tuple[str, int]]:
    """librdkafka's `[proto://]host[:port]` list as (host, port) pairs."""
    pairs = []
    for item in bootstrap.split(","):
        item = item.strip().split("://", 1)[-1]
        if not item:
            continue
        host, _, port = item.rpartition(":") if not item.endswith("]") else (item, "", "")
        if not host or not port.isdigit():
            host, port = item, str(DEFAULT_KAFKA_PORT)
        pairs.append((host.strip("[]"), int(port)))
    return pairs


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False
