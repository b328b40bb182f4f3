"""Replay server settings (env prefix SYI_): where it listens, which fixtures, how fast."""

from __future__ import annotations

from pathlib import Path

from syi_shared.settings import ServiceSettings

# <repo>/fixtures/replay when run from the repository (the package sits in services/replay-server/)
DEFAULT_FIXTURE_DIR = Path(__file__).resolve().parents[3] / "fixtures" / "replay"


class Settings(ServiceSettings):
    replay_host: str = "127.0.0.1"  # SYI_REPLAY_HOST
    replay_port: int = 8090  # SYI_REPLAY_PORT; serves the APIs, the WebSocket, /healthz, /metrics and /_control
    replay_fixture_dir: Path = DEFAULT_FIXTURE_DIR  # SYI_REPLAY_FIXTURE_DIR
    replay_speed: float = 1.0  # SYI_REPLAY_SPEED: recorded seconds played per wall-clock second
    replay_start_s: float = 0.0  # SYI_REPLAY_START_S: where in the recording to begin (e.g. 6000: before the depeg)
    replay_control: bool = True  # SYI_REPLAY_CONTROL: allow POST /_control (fault injection, seek, speed)
