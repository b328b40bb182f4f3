"""A three-broker Kafka cluster of the fault suite's own (the same code as `syi stack up --brokers 3`),
so a test can SIGKILL one node and start it again while the session broker serves the rest."""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from pathlib import Path

from syi_cli.stack.kafka_broker import KafkaCluster
from syi_cli.stack.processes import ManagedProcess
from syi_shared.admin import provision_topics
from syi_shared.settings import ServiceSettings


def free_port_block(count: int) -> int:
    """A port p with p … p+count-1 all free, below the kernel's ephemeral range: a port picked by
    bind(0) is ephemeral, and a node's own outgoing connections can take it before the node
    that was to listen there starts (seen: a controller port lost that way)."""
    low, _high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12_000), low - count)
        try:
            for offset in range(count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no {count} free ports in a row below {low}")


def free_ports(nodes: int) -> list[int]:
    """A broker port for each of `nodes` nodes, each with its controller on the next port."""
    first = free_port_block(2 * nodes)
    return [first + 2 * i for i in range(nodes)]


def quiet(_message: str) -> None:
    pass


class OwnCluster:
    def __init__(self, state_dir: Path, nodes: int = 3) -> None:
        self.cluster = KafkaCluster(state_dir, ports=free_ports(nodes))
        self.cluster.format_storage(say=quiet)
        self.processes: dict[int, ManagedProcess] = {
            node.node_id: process for node, process in zip(self.cluster.nodes, self.cluster.processes(quiet))
        }
        self.settings = ServiceSettings(kafka_bootstrap_servers=self.cluster.bootstrap)

    def start(self) -> OwnCluster:
        """Every node at once, until each serves metadata and the cluster lists them all."""
        self.cluster.start(say=quiet)
        return self

    def provision(self) -> ServiceSettings:
        """Every registry topic as the stack makes them on this cluster: 3 copies, 2 in sync."""
        provision_topics(self.settings)
        return self.settings

    def kill(self, node_id: int) -> None:
        """SIGKILL one node, as a crash or an OOM killer would; returns once the process is gone."""
        process = self.processes[node_id]
        pid = process.pid()
        assert pid is not None, f"kafka-{node_id} is not running"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while process.pid() is not None:
            assert time.monotonic() < deadline, f"kafka-{node_id} (pid {pid}) still alive 30 s after SIGKILL"
            time.sleep(0.1)

    def restart(self, node_id: int) -> None:
        """Start a node again on its data and ports; returns once it serves metadata as a member."""
        process = self.processes[node_id]
        process.start()
        process.wait_ready(timeout=120)

    def in_sync(self, node_id: int) -> bool:
        """A member again, and in the ISR of every partition it holds."""
        report = self.cluster.health()
        return node_id in report and report[node_id].ok

    def leaders(self, topics: list[str]) -> dict[int, int]:
        """How many partitions of `topics` each node leads."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(self.settings.kafka_config())
        deadline = time.monotonic() + 30
        while True:  # topics just created reach every broker's metadata a moment later
            metadata = admin.list_topics(timeout=10)
            partitions = [p for name in topics if name in metadata.topics
                          for p in metadata.topics[name].partitions.values()]
            if all(name in metadata.topics for name in topics) and all(p.leader >= 0 for p in partitions):
                break
            assert time.monotonic() < deadline, f"topics {topics} without leaders after 30 s"
            time.sleep(0.5)
        led: dict[int, int] = {node.node_id: 0 for node in self.cluster.nodes}
        for partition in partitions:
            led[partition.leader] = led.get(partition.leader, 0) + 1
        return led

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()
