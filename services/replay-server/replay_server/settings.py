"""Replay server settings (env prefix SYI_): where it listens, which fixtures, how fast."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import field_validator
from pydantic_settings import NoDecode

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
    # series ids answered with the recorded DTB3 observations (another id, e.g. a test's own, keeps its
    # trad.tbill key apart from other runs); unknown ids get FRED's "series does not exist"
    replay_fred_series: Annotated[list[str], NoDecode] = ["DTB3"]  # SYI_REPLAY_FRED_SERIES=DTB3,DTB3TEST

    @field_validator("replay_fred_series", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return [s.strip() for s in value.split(",") if s.strip()] if isinstance(value, str) else value
