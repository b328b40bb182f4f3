"""structlog, configured once per process: JSON off a TTY, pretty console on one."""

from __future__ import annotations

import logging
import sys

import structlog

_configured = False


def configure_logging(service: str, level: str = "INFO", fmt: str = "auto") -> structlog.stdlib.BoundLogger:
    global _configured
    if not _configured:
        json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
        renderer = structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
                renderer,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
            logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
            cache_logger_on_first_use=True,
        )
        structlog.contextvars.bind_contextvars(service=service)
        _configured = True
    return structlog.get_logger()


def get_logger(**context: object) -> structlog.stdlib.BoundLogger:
    # lazy: a module-level logger created before configure_logging still follows its configuration
    return structlog.get_logger(**context)
