"""Structured logging (structlog) with a correlation id bound per request or event."""

from __future__ import annotations

import logging
import sys
import time

import structlog
from structlog.contextvars import bind_contextvars, clear_contextvars, unbind_contextvars

__all__ = [
    "bind_contextvars",
    "clear_contextvars",
    "configure",
    "get_logger",
    "unbind_contextvars",
]


def configure(service: str, level: str = "INFO", json: bool = False) -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # aiokafka and pymongo log through stdlib logging: keep their warnings, drop chatter.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(message)s")
    logging.getLogger("aiokafka").addFilter(STARTING)


class StartingQuietly(logging.Filter):
    """While a service starts, the broker is still electing its group coordinator and
    aiokafka warns dozens of times (failed fetches, coordinator not available): expected,
    and read by a newcomer as errors. Until the service's consumers run, aiokafka's
    warnings are held back (errors still pass); the runtime says once that it waits for
    the broker, and ``started()`` lets everything through again."""

    def __init__(self, at_most: float = 90.0) -> None:
        super().__init__()
        self.starting = True
        self.until = time.monotonic() + at_most  # a process without consumers: a while

    def filter(self, record: logging.LogRecord) -> bool:
        if self.starting and time.monotonic() > self.until:
            self.starting = False
        return not (self.starting and record.levelno < logging.ERROR)

    def started(self) -> None:
        self.starting = False


STARTING = StartingQuietly()


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
