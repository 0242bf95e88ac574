"""structlog set-up shared by the daemon, the CLI and the role processes."""

from __future__ import annotations

import json as json_mod
import sys
import time
from typing import Any, TextIO

# structlog (and the rich it may pull in) is imported on first use, not here: the sandbox
# trampoline logs through ``configure_light`` and must not pay ~60 ms of imports per spawn.

__all__ = ["bind", "configure", "configure_light", "get_logger"]

_INFO = 20  # logging.INFO, without importing logging (~10 ms) in the trampoline
_light: _LightLogger | None = None


class _LightLogger:
    """JSON lines in the shape structlog's JSON set-up writes (``event``, keys, ``level``,
    ``timestamp``), without structlog: for the trampoline, whose few events the
    supervisor parses exactly like a role's."""

    def __init__(self, stream: TextIO, keys: dict[str, Any]) -> None:
        self._stream = stream
        self._keys = keys

    def bind(self, **keys: Any) -> _LightLogger:
        return _LightLogger(self._stream, {**self._keys, **keys})

    def _emit(self, level: str, event: str, keys: dict[str, Any]) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        record = {**self._keys, **keys, "event": event, "level": level,
                  "timestamp": f"{stamp}.{int(now % 1 * 1e6):06d}Z"}
        try:
            self._stream.write(json_mod.dumps(record, default=str) + "\n")
            self._stream.flush()
        except (OSError, ValueError):  # a closed stderr must not fail the caller
            pass

    def debug(self, event: str, **keys: Any) -> None:
        self._emit("debug", event, keys)

    def info(self, event: str, **keys: Any) -> None:
        self._emit("info", event, keys)

    def warning(self, event: str, **keys: Any) -> None:
        self._emit("warning", event, keys)

    def error(self, event: str, **keys: Any) -> None:
        self._emit("error", event, keys)


class _NeverRaises:
    """A text stream whose writes never raise: once the reader of the daemon's stderr is
    gone (the terminal closed, the parent killed, journald restarted) every log call
    would raise BrokenPipeError into whatever was logging, e.g. the shutdown it was
    reporting, which then never finished. Lost lines are lost; the work goes on.
    (structlog's loggers write straight to their file; it has no such option.)"""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (OSError, ValueError):
            return 0

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            pass

    def isatty(self) -> bool:
        try:
            return self._stream.isatty()
        except ValueError:
            return False

    def fileno(self) -> int:
        return self._stream.fileno()


def configure_light(stream: TextIO | None = None) -> None:
    """Log JSON lines to ``stream`` (stderr) without importing structlog, until
    ``configure`` is called. Never raises."""
    global _light
    _light = _LightLogger(stream if stream is not None else sys.stderr, {})


def configure(*, json: bool | None = None, stream: TextIO | None = None,
              level: int = _INFO, journal: bool = False) -> None:
    """Configure structlog once per process.

    JSON lines when ``stream`` is not a terminal (the daemon under systemd, a role whose
    stderr the supervisor drains), human-readable lines on a TTY. With ``journal`` and
    ``stream`` being systemd's journal stream (``$JOURNAL_STREAM``), each event goes to
    the journal natively instead, with its priority and its keys as fields (the JSON
    line is its MESSAGE). Never raises.
    """
    global _light
    import structlog

    from .journal import make_sink

    _light = None
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
        logger_factory=structlog.PrintLoggerFactory(_NeverRaises(out)),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def get_logger(**initial: Any) -> Any:
    """Return a structlog logger bound to ``initial`` keys (e.g. ``component=``); after
    ``configure_light``, a structlog-free one with the same methods."""
    if _light is not None:
        return _light.bind(**initial)
    import structlog

    return structlog.get_logger(**initial)


def bind(**keys: Any) -> None:
    """Add ``keys`` to every event this process logs from now on (e.g. ``component=``)."""
    if _light is not None:
        _light._keys.update(keys)
        return
    import structlog

    structlog.contextvars.bind_contextvars(**keys)
