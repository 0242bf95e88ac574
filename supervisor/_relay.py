"""A child's output is data: relayed under the child's name, escaped, capped, rate-limited.

A component may be compromised, and its stdout/stderr end up in the supervisor's log. So a
line never becomes a supervisor event: it is logged as ``child.log`` (the child's own event
name and fields, if it printed a JSON event, ride along as ``child_event`` and ``child``),
every string is stripped of control characters (an ``ESC[2J`` or a newline cannot forge a
log line on a terminal), the level is capped at ``warning``, sizes are bounded, and each
component gets a token bucket: past it, lines are dropped and counted, and the count is
reported once the flood is over.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ChildLogRelay"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LEVELS = {"debug": "debug", "info": "info", "warning": "warning", "warn": "warning",
           "error": "warning", "critical": "warning", "exception": "warning"}
_MAX_TEXT = 2000
_MAX_KEYS = 40
_MAX_DEPTH = 4


def _escape(text: str) -> str:
    """Control characters as visible ``\\xNN``; long text cut with a marker."""
    cut = text[:_MAX_TEXT] + ("…" if len(text) > _MAX_TEXT else "")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", cut)


def _clean(value: object, depth: int = 0) -> object:
    """A JSON value made safe to log: strings escaped, containers bounded."""
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if depth >= _MAX_DEPTH:
        return "…"
    if isinstance(value, list):
        return [_clean(v, depth + 1) for v in value[:_MAX_KEYS]]
    if isinstance(value, dict):
        return {_escape(str(k))[:100]: _clean(v, depth + 1)
                for k, v in list(value.items())[:_MAX_KEYS]}
    return _escape(repr(value))


class ChildLogRelay:
    """Relays one component's output lines into the supervisor's log (one per component,
    kept across its restarts so a crash loop cannot reset the budget)."""

    def __init__(self, log: Any, *, rate: float = 200.0, burst: float = 1000.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()
        self.dropped = 0  # lines dropped since the last report
        self.dropped_total = 0

    def relay(self, pid: int, stream: str, text: str) -> str | None:
        """Log one line the child wrote; return what it says as a failure reason (its
        error text, or a plain stderr line), None otherwise. Never raises."""
        if not self._admit():
            return None
        try:
            event = json.loads(text)
        except (ValueError, RecursionError):  # not JSON (or absurdly nested): log raw
            event = None
        if isinstance(event, dict) and isinstance(event.get("event"), str):
            level = _LEVELS.get(str(event.get("level", "info")), "info")
            fields = {k: v for k, v in event.items()
                      if k not in ("event", "level", "timestamp", "component", "pid")}
            child_event = _escape(event["event"])[:200]
            getattr(self._log, level)("child.log", pid=pid, stream=stream,
                                      child_event=child_event,
                                      child_level=_escape(str(event.get("level", "")))[:20],
                                      child=_clean(fields))
            if str(event.get("level")) in ("error", "critical"):
                return f"{child_event}: {_escape(str(event.get('error', '')))}"[:300]
            return None
        if not text:
            return None
        line = _escape(text)
        self._log.info("child.log", pid=pid, stream=stream, line=line)
        return line[:300] if stream == "stderr" else None

    def _admit(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens < 1.0:
            self.dropped += 1
            self.dropped_total += 1
            return False
        self._tokens -= 1.0
        if self.dropped:
            self._log.warning("child.log_dropped", lines=self.dropped,
                              total=self.dropped_total,
                              why=f"more than {self._rate:g} lines/s (burst {self._burst:g})")
            self.dropped = 0
        return True

    def flush(self) -> None:
        """Report lines dropped at the end of a flood that no later line reported."""
        if self.dropped:
            self._log.warning("child.log_dropped", lines=self.dropped,
                              total=self.dropped_total,
                              why=f"more than {self._rate:g} lines/s (burst {self._burst:g})")
            self.dropped = 0
