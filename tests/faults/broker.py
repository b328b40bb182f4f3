"""A Kafka broker of the fault suite's own (same code as tests/conftest.py's session broker),
so a test can SIGKILL it and start it again while the session broker stays up for the rest."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from syi_cli.stack.kafka_broker import KafkaBroker
from syi_cli.stack.processes import ManagedProcess
from syi_shared.admin import provision_topics
from syi_shared.settings import ServiceSettings
from tests.conftest import free_port_pair


class OwnBroker:
    def __init__(self, state_dir: Path) -> None:
        self.broker = KafkaBroker(state_dir, port=free_port_pair())
        self.broker.format_storage(say=lambda m: None)
        self.process: ManagedProcess | None = None
        self.settings = ServiceSettings(kafka_bootstrap_servers=self.broker.bootstrap)

    def start(self) -> OwnBroker:
        """Start (or restart on the same data and port) and wait until it serves metadata."""
        self.process = self.broker.process(say=lambda m: None)
        self.process.start()
        self.process.wait_ready(timeout=120)
        return self

    def provision(self) -> ServiceSettings:
        provision_topics(self.settings)
        return self.settings

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM killer would; returns once the process is gone."""
        assert self.process is not None
        pid = self.process.pid()
        assert pid is not None, "the broker is not running"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.process.pid() is not None:
            assert time.monotonic() < deadline, f"broker pid {pid} still alive 30 s after SIGKILL"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
