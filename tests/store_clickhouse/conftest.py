"""chDB for the store-clickhouse tests: one store path per test session, one database per test.

A process can open only one chDB path; the session fixture holds one handle open for the
whole session so every test's client shares that engine. Services started as processes
get paths of their own and are queried from subprocesses (see test_service_process.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from store_clickhouse.clickhouse_store import ClickHouseStore, connect


@pytest.fixture(scope="session")
def chdb_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    dsn = f"chdb://{tmp_path_factory.mktemp('chdb')}"
    anchor = connect(dsn)
    yield dsn
    anchor.close()


@pytest.fixture
def database() -> str:
    return f"test_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(chdb_dsn: str, database: str) -> Iterator[ClickHouseStore]:
    store = ClickHouseStore.open(chdb_dsn, database)
    store.ensure_schema()
    yield store
    store.close()
