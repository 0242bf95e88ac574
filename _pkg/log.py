"""structlog set-up shared by the daemon, the CLI and the role processes."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from .journal import make_sink

__all__ = ["bind", "configure", "get_logger"]


def configure(*, json: bool | None = None, stream: TextIO | None = None,
              level: int = logging.INFO, journal: bool = False) -> None:
    """Configure structlog once per process.

    JSON lines when ``stream`` is not a terminal (the daemon under systemd, a role whose
    stderr the supervisor drains), human-readable lines on a TTY. With ``journal`` and
    ``stream`` being systemd's journal stream (``$JOURNAL_STREAM``), each event goes to
    the journal natively instead, with its priority and its keys as fields (the JSON
    line is its MESSAGE). Never raises.
    """
    out = stream if stream is not None else sys.stderr
    as_json = (not out.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    if journal:
        sink = make_sink(renderer, stream=out)
        if sink is not None:
            renderer = sink
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def get_logger(**initial: Any) -> Any:
    """Return a structlog logger bound to ``initial`` keys (e.g. ``component=``)."""
    return structlog.get_logger(**initial)


def bind(**keys: Any) -> None:
    """Add ``keys`` to every event this process logs from now on (e.g. ``component=``)."""
    structlog.contextvars.bind_contextvars(**keys)
