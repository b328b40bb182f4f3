"""The local stack: Kafka and PostgreSQL (and, via `services`, every service) as background processes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from syi_cli.stack.kafka_broker import KafkaBroker
from syi_cli.stack.postgres import PostgresCluster
from syi_cli.stack.processes import ManagedProcess


@dataclass
class LocalStack:
    state_dir: Path
    kafka_port: int = 9092
    pg_port: int = 5432

    def __post_init__(self) -> None:
        self.kafka = KafkaBroker(self.state_dir, port=self.kafka_port)
        self.postgres = PostgresCluster(self.state_dir, port=self.pg_port)

    @property
    def env(self) -> dict[str, str]:
        """What a service needs to find this stack."""
        return {
            "SYI_KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap,
            "SYI_POSTGRES_DSN": self.postgres.dsn,
        }

    def infrastructure(self, say=print) -> list[ManagedProcess]:
        return [self.kafka.process(say), self.postgres.process()]

    def up(self, say=print) -> None:
        self.kafka.format_storage(say)
        self.postgres.init(say)
        for process in self.infrastructure(say):
            pid, started = process.start()
            say(f"{process.name}: {'started' if started else 'already running'} (pid {pid}), waiting until ready ...")
            process.wait_ready(timeout=120)
            say(f"{process.name}: ready")
        self.postgres.ensure_database()

    def down(self, say=print) -> None:
        """Stop every process with a pid file here: services first, then Kafka and PostgreSQL."""
        infrastructure = self.infrastructure(say)
        for process in [*self._started_elsewhere(infrastructure), *infrastructure]:
            if process.stop():
                say(f"{process.name}: stopped")

    def processes(self, say=print) -> list[ManagedProcess]:
        """Infrastructure plus every process that has a pid file, for `status`."""
        infrastructure = self.infrastructure(say)
        return [*infrastructure, *self._started_elsewhere(infrastructure)]

    def _started_elsewhere(self, infrastructure: list[ManagedProcess]) -> list[ManagedProcess]:
        """The other processes with a pid file here (the services `syi stack up` started):
        enough to find, report and stop them by pid, not to start them."""
        names = {p.name for p in infrastructure}
        return [
            ManagedProcess(name=pid_file.stem, command=[], state_dir=self.state_dir)
            for pid_file in sorted((self.state_dir / "pids").glob("*.pid"))
            if pid_file.stem not in names
        ]
