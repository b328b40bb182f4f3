"""Apache Kafka 4.x in KRaft mode from the official jars on Maven Central: one node, or a cluster
of N nodes on one machine (each broker and controller, own ports, logs and data, one cluster id)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from base64 import urlsafe_b64encode
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from syi_cli.paths import CACHE_DIR, REPO_ROOT
from syi_cli.stack.processes import ManagedProcess
from syi_cli.stack.service_health import UNREACHABLE, Health

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


CLUSTER_HEAP = "256m"  # each of a cluster's nodes: enough for the local stack (measured)
# A cluster's internal topics (consumer offsets, transaction state) are replicated like the data:
# up to 3 copies, 2 of them in sync (docs/operations.md, "Three brokers").
CLUSTER_REPLICATION = 3


class KafkaBroker:
    """One KRaft node, broker and controller. Alone (the default) it is the whole cluster, in
    `<state>/kafka`; as node `node_id` of a cluster it votes with the other `voters`."""

    def __init__(self, state_dir: Path, port: int = 9092, controller_port: int | None = None, heap: str = "512m",
                 node_id: int = 1, voters: str | None = None, replication: int = 1, name: str = "kafka"):
        self.state_dir = state_dir
        self.port = port
        self.controller_port = controller_port or port + 1
        self.heap = heap
        self.node_id = node_id
        self.voters = voters or f"{node_id}@127.0.0.1:{self.controller_port}"
        self.replication = replication  # copies of the internal topics
        self.name = name  # of its process: pid file, log file, `syi stack status`
        self.home = state_dir / name

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "server.properties"
        min_isr = 2 if self.replication >= 3 else 1
        # a topic created without a replication factor (not ours: provision_topics gives one) is replicated too
        cluster = ([f"default.replication.factor={self.replication}", f"min.insync.replicas={min_isr}"]
                   if self.replication > 1 else [])
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={self.node_id}",
                    f"controller.quorum.voters={self.voters}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={self.home / 'data'}",
                    "num.partitions=1",
                    f"offsets.topic.replication.factor={self.replication}",
                    "offsets.topic.num.partitions=10",
                    f"transaction.state.log.replication.factor={self.replication}",
                    f"transaction.state.log.min.isr={min_isr}",
                    f"share.coordinator.state.topic.replication.factor={self.replication}",
                    f"share.coordinator.state.topic.min.isr={min_isr}",
                    *cluster,
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
            name=self.name,
            command=[
                java, f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC",
                f"-Dlog4j2.configurationFile={LOG4J}", "-cp", classpath, "kafka.Kafka", str(config),
            ],
            state_dir=self.state_dir,
            ready=lambda: port_open("127.0.0.1", self.port) and self._metadata_ok(),
        )

    @property
    def formatted(self) -> bool:
        return (self.home / "data" / "meta.properties").exists()

    def cluster_id(self) -> str | None:
        """The id its storage was formatted with, None before."""
        if not self.formatted:
            return None
        for line in (self.home / "data" / "meta.properties").read_text().splitlines():
            if line.startswith("cluster.id="):
                return line.split("=", 1)[1].strip()
        return None

    def format_storage(self, say=print, cluster_id: str | None = None) -> None:
        """Format the KRaft storage once, before the first start (a cluster's nodes: one shared id)."""
        data = self.home / "data"
        if self.formatted:
            return
        classpath = kafka_classpath(say)
        config = self._write_config()
        cluster_id = cluster_id or urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        say(f"formatting Kafka storage in {data} (cluster id {cluster_id})")
        subprocess.run(
            [shutil.which("java") or "java", f"-Dlog4j2.configurationFile={LOG4J}", "-cp", classpath,
             # `--cluster-id=ID`, not `-t ID`: a random id may start with "-" and read as an option
             "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(config)],
            check=True, stdout=subprocess.DEVNULL,
        )

    def _metadata_ok(self) -> bool:
        """It answers metadata itself and counts itself in (registered with the controllers, unfenced)."""
        from confluent_kafka.admin import AdminClient

        try:
            metadata = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
        except Exception:
            return False
        return self.node_id in metadata.brokers


class KafkaCluster:
    """`brokers` KRaft nodes on one machine from the same jars. One is exactly `KafkaBroker`'s
    single node (`<state>/kafka`, process `kafka`); more are `kafka-1` … `kafka-N`, node N on
    port `port + 2 (N - 1)` and its controller on the next port, all voters of one quorum."""

    def __init__(self, state_dir: Path, brokers: int = 1, port: int = 9092, ports: Sequence[int] | None = None,
                 heap: str | None = None) -> None:
        ports = list(ports) if ports else [port + 2 * i for i in range(brokers)]
        if len(ports) == 1:
            self.nodes = [KafkaBroker(state_dir, port=ports[0], **({"heap": heap} if heap else {}))]
            return
        voters = ",".join(f"{node}@127.0.0.1:{p + 1}" for node, p in enumerate(ports, start=1))
        self.nodes = [
            KafkaBroker(state_dir, port=p, heap=heap or CLUSTER_HEAP, node_id=node, voters=voters,
                        replication=min(len(ports), CLUSTER_REPLICATION), name=f"kafka-{node}")
            for node, p in enumerate(ports, start=1)
        ]

    @property
    def size(self) -> int:
        return len(self.nodes)

    @property
    def bootstrap(self) -> str:
        """Every node: clients find the cluster while any one of them is up."""
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> KafkaBroker:
        return self.nodes[node_id - 1]

    def format_storage(self, say=print) -> None:
        """Format each node not yet formatted, all with one cluster id (a node added later joins the same one)."""
        ids = {node.cluster_id() for node in self.nodes} - {None}
        if len(ids) > 1:
            raise SystemExit(f"the Kafka nodes under {self.nodes[0].state_dir} were formatted with different "
                             f"cluster ids ({', '.join(sorted(ids))}); remove their data folders to start afresh")
        shared = ids.pop() if ids else None
        if shared is None and self.size > 1:
            shared = urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        for node in self.nodes:
            node.format_storage(say, cluster_id=shared)

    def processes(self, say=print) -> list[ManagedProcess]:
        return [node.process(say) for node in self.nodes]

    def start(self, say=print, timeout: float = 120.0) -> None:
        """Start every node, then wait for each: a node alone cannot be ready (no quorum)."""
        processes = self.processes(say)
        for process in processes:
            pid, started = process.start()
            say(f"{process.name}: {'started' if started else 'already running'} (pid {pid}), waiting until ready ...")
        for process in processes:
            process.wait_ready(timeout=timeout)
            say(f"{process.name}: ready")
        if self.size > 1:
            self.wait_registered(timeout)
            say(f"kafka: {self.size} brokers in the cluster ({self.bootstrap})")

    def wait_registered(self, timeout: float = 120.0) -> None:
        """Until the cluster's metadata lists every node."""
        deadline = time.monotonic() + timeout
        while (missing := {n.node_id for n in self.nodes} - self.registered()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Kafka nodes {sorted(missing)} not in the cluster after {timeout:.0f} s")
            time.sleep(0.5)

    def registered(self, timeout: float = 5.0) -> set[int]:
        """The node ids the cluster's metadata lists (registered with the controllers, unfenced)."""
        metadata = self._metadata(timeout)
        return set(metadata.brokers) if metadata is not None else set()

    def health(self, timeout: float = 5.0) -> dict[int, Health]:
        """Each node as the cluster sees it: ok (registered, in sync on every partition it holds),
        degraded (registered, catching up), or unreachable (not in the cluster's metadata)."""
        metadata = self._metadata(timeout)
        if metadata is None:
            return {n.node_id: Health(UNREACHABLE, (f"no metadata from {self.bootstrap}",)) for n in self.nodes}
        held: dict[int, int] = {}
        behind: dict[int, int] = {}
        for topic in metadata.topics.values():
            for partition in topic.partitions.values():
                for replica in partition.replicas:
                    held[replica] = held.get(replica, 0) + 1
                    if replica not in partition.isrs:
                        behind[replica] = behind.get(replica, 0) + 1
        report = {}
        for node in self.nodes:
            if node.node_id not in metadata.brokers:
                report[node.node_id] = Health(UNREACHABLE, ("not in the cluster (down, starting or fenced)",))
            elif behind.get(node.node_id):
                report[node.node_id] = Health("degraded", (
                    f"catching up: out of sync on {behind[node.node_id]} of the {held[node.node_id]} "
                    "partitions it holds",))
            else:
                report[node.node_id] = Health("ok")
        return report

    def _metadata(self, timeout: float) -> Any:
        from confluent_kafka.admin import AdminClient

        try:
            return AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=timeout)
        except Exception:
            return None
