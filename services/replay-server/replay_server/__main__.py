"""`python -m replay_server` (or `syi run replay-server`): settings → logging → serve."""

from __future__ import annotations

import uvicorn

from replay_server.app import build_app
from replay_server.settings import Settings
from syi_shared.logs import configure_logging

SERVICE = "replay-server"


def main() -> None:
    settings = Settings()
    log = configure_logging(SERVICE, settings.log_level, settings.log_format)
    app = build_app(settings)
    recording = app.state.replay.recording
    log.info("replaying", fixtures=str(settings.replay_fixture_dir), duration_s=recording.duration_s,
             streams=len(recording.streams), speed=settings.replay_speed,
             url=f"http://{settings.replay_host}:{settings.replay_port}")
    # uvicorn's access log would print query strings (FRED api keys): off. SIGTERM is uvicorn's:
    # it closes the connections (WebSockets with 1012) and exits.
    uvicorn.run(app, host=settings.replay_host, port=settings.replay_port, log_level="warning",
                access_log=False, ws="websockets-sansio", lifespan="off", timeout_graceful_shutdown=3)


if __name__ == "__main__":
    main()
