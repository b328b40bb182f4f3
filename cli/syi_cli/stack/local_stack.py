"""The local stack: Kafka and PostgreSQL (and, via `services`, every service) as background processes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from syi_cli.stack.kafka_broker import KafkaCluster
from syi_cli.stack.postgres import PostgresCluster
from syi_cli.stack.processes import ManagedProcess

BROKERS_FILE = "kafka-brokers"  # how many Kafka nodes the last `up` started: `status`, `down` and `restart` read it


@dataclass
class LocalStack:
    state_dir: Path
    kafka_port: int = 9092
    pg_port: int = 5432
    brokers: int | None = None  # Kafka nodes; None: as many as the last `up` started (1 before any)

    def __post_init__(self) -> None:
        self.kafka = KafkaCluster(self.state_dir, self.brokers or self.recorded_brokers(), port=self.kafka_port)
        self.postgres = PostgresCluster(self.state_dir, port=self.pg_port)

    def recorded_brokers(self) -> int:
        try:
            return max(1, int((self.state_dir / BROKERS_FILE).read_text().strip()))
        except (FileNotFoundError, ValueError):
            return 1

    def running_brokers(self) -> int | None:
        """The size of the recorded cluster when any of its nodes runs, else None."""
        recorded = KafkaCluster(self.state_dir, self.recorded_brokers(), port=self.kafka_port)
        running = [ManagedProcess(name=node.name, command=[], state_dir=self.state_dir).pid() for node in recorded.nodes]
        return recorded.size if any(running) else None

    @property
    def env(self) -> dict[str, str]:
        """What a service needs to find this stack."""
        env = {
            "SYI_KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap,
            "SYI_POSTGRES_DSN": self.postgres.dsn,
        }
        if self.kafka.size > 1:  # a topic a service creates itself is replicated like the rest
            from syi_shared.admin import replication

            env["SYI_TOPIC_REPLICATION_FACTOR"] = str(replication(self.kafka.size)[0])
        return env

    def infrastructure(self, say=print) -> list[ManagedProcess]:
        return [*self.kafka.processes(say), self.postgres.process()]

    def up(self, say=print) -> None:
        running = self.running_brokers()
        if running is not None and running != self.kafka.size:
            raise SystemExit(f"a Kafka of {running} broker{'s' if running > 1 else ''} runs from {self.state_dir}; "
                             f"stop it first (`syi stack down`) to start {self.kafka.size}")
        self.kafka.format_storage(say)
        self.postgres.init(say)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / BROKERS_FILE).write_text(f"{self.kafka.size}\n")
        self.kafka.start(say)
        process = self.postgres.process()
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
