"""Session-wide real infrastructure for the tests: a dedicated Kafka broker and PostgreSQL
cluster on free ports, started once per test session by the same code as `syi stack up`.

Set SYI_TEST_KAFKA=host:port (and SYI_TEST_POSTGRES_DSN) to reuse a running stack instead.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from syi_shared.settings import ServiceSettings

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_generator() -> ModuleType:
    """tools/make_demo_tape.py is a script, not a package: load it by path."""
    spec = importlib.util.spec_from_file_location("make_demo_tape", REPO_ROOT / "tools" / "make_demo_tape.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_pair() -> int:
    """A port p with p+1 also free (Kafka's broker and controller listeners)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="session")
def stack_state_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="syi-test-stack-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap(stack_state_dir: Path) -> Iterator[str]:
    """A real Apache Kafka broker (KRaft) for this test session."""
    preset = os.environ.get("SYI_TEST_KAFKA")
    if preset:
        yield preset
        return
    from syi_cli.stack.kafka_broker import KafkaBroker

    broker = KafkaBroker(stack_state_dir, port=free_port_pair())
    broker.format_storage(say=lambda m: None)
    process = broker.process(say=lambda m: None)
    process.start()
    try:
        process.wait_ready(timeout=120)
        yield broker.bootstrap
    finally:
        process.stop()


@pytest.fixture(scope="session")
def postgres_dsn(stack_state_dir: Path) -> Iterator[str]:
    """A real PostgreSQL cluster for this test session, database `stableyield`."""
    preset = os.environ.get("SYI_TEST_POSTGRES_DSN")
    if preset:
        yield preset
        return
    from syi_cli.stack.postgres import PostgresCluster

    cluster = PostgresCluster(stack_state_dir, port=free_port())
    cluster.init(say=lambda m: None)
    process = cluster.process()
    process.start()
    try:
        process.wait_ready(timeout=60)
        cluster.ensure_database()
        yield cluster.dsn
    finally:
        process.stop()
        shutil.rmtree(cluster.home, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_settings(kafka_bootstrap: str) -> ServiceSettings:
    return ServiceSettings(kafka_bootstrap_servers=kafka_bootstrap)


@pytest.fixture(scope="session")
def provisioned(kafka_settings: ServiceSettings) -> ServiceSettings:
    """The broker with every registry topic created."""
    from syi_shared.admin import provision_topics

    provision_topics(kafka_settings)
    return kafka_settings


@pytest.fixture
def unique_group() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"
