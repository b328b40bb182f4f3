"""Apache Kafka 4.x, single KRaft node, from the official jars on Maven Central."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from base64 import urlsafe_b64encode
from pathlib import Path

from syi_cli.paths import CACHE_DIR, REPO_ROOT
from syi_cli.stack.processes import ManagedProcess

KAFKA_VERSION = "4.1.1"
POM = REPO_ROOT / "stack" / "kafka" / "pom.xml"
LOG4J = REPO_ROOT / "stack" / "kafka" / "log4j2.yaml"


def kafka_classpath(say=print) -> str:
    """`$KAFKA_HOME/libs/*` when set, else the jars resolved from Maven Central into the cache."""
    home = os.environ.get("KAFKA_HOME")
    if home:
        libs = Path(home) / "libs"
        if not libs.is_dir():
            raise SystemExit(f"KAFKA_HOME={home} has no libs/ folder; unset it or point it at a Kafka 4.x install")
        return f"{libs}/*"
    lib = CACHE_DIR / f"kafka-{KAFKA_VERSION}" / "lib"
    marker = lib / ".complete"
    if not marker.exists():
        mvn = shutil.which("mvn")
        if not mvn:
            raise SystemExit(
                "Kafka's jars come from Maven Central and Maven is not installed.\n"
                "Install it (Debian: apt-get install -y maven openjdk-17-jre-headless) "
                "or set KAFKA_HOME to an unpacked Apache Kafka 4.x."
            )
        say(f"downloading Apache Kafka {KAFKA_VERSION} jars from Maven Central into {lib} ...")
        lib.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
             f"-DoutputDirectory={lib}", "-DincludeScope=runtime"],
            check=True,
        )
        marker.write_text(KAFKA_VERSION)
        say(f"Kafka jars ready ({len(list(lib.glob('*.jar')))} jars)")
    return f"{lib}/*"


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class KafkaBroker:
    def __init__(self, state_dir: Path, port: int = 9092, controller_port: int | None = None, heap: str = "512m"):
        self.state_dir = state_dir
        self.port = port
        self.controller_port = controller_port or port + 1
        self.heap = heap
        self.home = state_dir / "kafka"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "server.properties"
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={self.home / 'data'}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=10",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "log.retention.check.interval.ms=300000",
                    "",
                ]
            )
        )
        return config

    def process(self, say=print) -> ManagedProcess:
        classpath = kafka_classpath(say)
        config = self._write_config()
        java = shutil.which("java") or "java"
        return ManagedProcess(
            name="kafka",
            command=[
                java, f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC",
                f"-Dlog4j2.configurationFile={LOG4J}", "-cp", classpath, "kafka.Kafka", str(config),
            ],
            state_dir=self.state_dir,
            ready=lambda: port_open("127.0.0.1", self.port) and self._metadata_ok(),
        )

    def format_storage(self, say=print) -> None:
        """Format the KRaft storage once, before the first start."""
        data = self.home / "data"
        if (data / "meta.properties").exists():
            return
        classpath = kafka_classpath(say)
        config = self._write_config()
        cluster_id = urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        say(f"formatting Kafka storage in {data} (cluster id {cluster_id})")
        subprocess.run(
            [shutil.which("java") or "java", f"-Dlog4j2.configurationFile={LOG4J}", "-cp", classpath,
             # `--cluster-id=ID`, not `-t ID`: a random id may start with "-" and read as an option
             "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(config)],
            check=True, stdout=subprocess.DEVNULL,
        )

    def _metadata_ok(self) -> bool:
        from confluent_kafka.admin import AdminClient

        try:
            AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
            return True
        except Exception:
            return False
