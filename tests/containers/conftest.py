"""The container tests' infrastructure: the images (ops/images/build.sh, warm after the first
time), a Kafka broker of their own (the services publish for real: their records must not reach
the topics other tests read) and a database of their own on the session's PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import free_port_pair
from tests.containers.podman import build_images, remove_session_objects


@pytest.fixture(scope="session")
def service_images() -> float:
    """Every service image built (seconds the build took: cold the first time, then cached)."""
    seconds = build_images()
    print(f"\nimages: every service built in {seconds:.0f} s")
    return seconds


@pytest.fixture(scope="session", autouse=True)
def _no_container_left() -> Iterator[None]:
    yield
    remove_session_objects()


@pytest.fixture(scope="module")
def container_kafka() -> Iterator[str]:
    from syi_cli.stack.kafka_broker import KafkaBroker
    from syi_shared.admin import provision_topics
    from syi_shared.settings import ServiceSettings

    state = Path(tempfile.mkdtemp(prefix="syi-containers-kafka-"))
    broker = KafkaBroker(state, port=free_port_pair())
    broker.format_storage(say=lambda m: None)
    process = broker.process(say=lambda m: None)
    process.start()
    try:
        process.wait_ready(timeout=120)
        provision_topics(ServiceSettings(kafka_bootstrap_servers=broker.bootstrap))
        yield broker.bootstrap
    finally:
        process.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def container_database(postgres_dsn: str) -> str:
    """A fresh database on the session's PostgreSQL, for the containers' store-timescale and rest-api."""
    name = "syi_containers"
    base, _, _ = postgres_dsn.rpartition("/")

    async def create() -> None:
        conn = await asyncpg.connect(f"{base}/postgres")
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()

    asyncio.run(create())
    return f"{base}/{name}"
