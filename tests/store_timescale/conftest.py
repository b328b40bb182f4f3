from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.store_timescale.databases import fresh_database


@pytest.fixture
async def fresh_dsn(postgres_dsn: str) -> AsyncIterator[str]:
    """An empty database of its own for one test."""
    async with fresh_database(postgres_dsn) as dsn:
        yield dsn
