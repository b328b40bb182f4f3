"""`python -m rest_api`: settings → logging → serve (uvicorn handles SIGTERM gracefully)."""

from __future__ import annotations

import uvicorn

from syi_shared.logs import configure_logging, get_logger

from rest_api.app import create_app
from rest_api.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging("rest-api", settings.log_level, settings.log_format)
    get_logger().info("serving", host=settings.api_host, port=settings.api_port, auth=settings.auth_required)
    # no access log: one line per request is costly, and syi_api_requests_total counts them
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, access_log=False,
                log_config=None, server_header=False)


if __name__ == "__main__":
    main()
