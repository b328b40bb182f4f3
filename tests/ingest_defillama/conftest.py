"""Fixtures: the replay server (see tests/replay_server/harness.py)."""

from tests.replay_server.harness import replay, replay_process  # noqa: F401 (fixtures)
