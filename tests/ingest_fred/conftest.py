"""Fixtures: a replay server that also answers for this session's own FRED series ids, so the
trad.tbill keys these tests publish are theirs alone (other tests may publish DTB3)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.replay_server.harness import ReplayServer, replay  # noqa: F401 (fixture)

SERIES = [f"DTB3{uuid.uuid4().hex[:8].upper()}" for _ in range(3)]


@pytest.fixture(scope="session")
def fred_series() -> list[str]:
    return SERIES


@pytest.fixture(scope="session")
def replay_process() -> Iterator[ReplayServer]:
    server = ReplayServer({"SYI_REPLAY_FRED_SERIES": ",".join(["DTB3", *SERIES])})
    yield server
    server.stop()
