"""structlog setup: JSON lines with a request id bound on every line of a request."""

from __future__ import annotations

import logging
import sys

import structlog

from proxy.config import LoggingConfig

#: whether info lines are written (set by `configure_logging`): the request path skips building one that is not
INFO_ENABLED = True


def configure_logging(cfg: LoggingConfig) -> None:
    global INFO_ENABLED
    level = getattr(logging, cfg.level.upper())
    INFO_ENABLED = level <= logging.INFO
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if cfg.json_logs else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr, format="%(name)s %(message)s")
