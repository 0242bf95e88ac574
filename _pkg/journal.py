"""Log events to systemd's journal as structured entries (native protocol), never blocking.

Under systemd a line on stderr becomes a journal entry with only MESSAGE and the unit's
priority; sent natively, each event carries its priority and its keys as fields, so
``journalctl -u bitcoin-supervisor COMPONENT=wallet EVENT=component.exited`` works. The
protocol is one datagram per entry on ``/run/systemd/journal/socket`` (``KEY=value``
lines; a value with a newline is ``KEY\\n<le64 length><bytes>\\n``): written here rather
than depend on systemd-python, a C extension, for that. The socket is non-blocking: the
daemon logs from its event loop, and a journald that does not drain its queue must not
stall brokered calls; such an entry is dropped and counted.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import structlog

__all__ = ["JOURNAL_SOCKET", "JournalSink", "encode_entry", "journal_fields", "make_sink",
           "stream_is_journal"]

JOURNAL_SOCKET = "/run/systemd/journal/socket"
# syslog(3) priorities of structlog's level names.
_PRIORITY = {"critical": 2, "exception": 3, "error": 3, "warning": 4, "warn": 4,
             "info": 6, "debug": 7, "notset": 7}
# Fields journald or journalctl give a meaning of their own: an event key of that name is
# kept under FIELD_<NAME> so no event can forge them.
_RESERVED = frozenset({
    "MESSAGE", "MESSAGE_ID", "PRIORITY", "CODE_FILE", "CODE_LINE", "CODE_FUNC", "ERRNO",
    "INVOCATION_ID", "USER_INVOCATION_ID", "SYSLOG_FACILITY", "SYSLOG_IDENTIFIER",
    "SYSLOG_PID", "SYSLOG_TIMESTAMP", "SYSLOG_RAW", "DOCUMENTATION", "TID", "UNIT",
    "USER_UNIT", "OBJECT_PID", "COREDUMP_UNIT", "COREDUMP_USER_UNIT", "COMPONENT_PID"})
_KEY = re.compile(r"[a-z][a-z0-9_]{0,59}")
# One entry stays well below the default datagram limit (net.core.wmem_default ~208 KiB).
_MAX_VALUE = 32 * 1024


def stream_is_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` is the journal stream systemd connected (``$JOURNAL_STREAM``
    names its device:inode, sd_journal_stream_fd(3)); False elsewhere, also when stderr
    was redirected by a child of the service. Never raises."""
    env = os.environ if environ is None else environ
    dev, _, ino = env.get("JOURNAL_STREAM", "").partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def journal_fields(event: Mapping[str, Any], message: str, identifier: str
                   ) -> list[tuple[str, str]]:
    """The journal fields of one event: MESSAGE (the rendered line), PRIORITY (from its
    level), SYSLOG_IDENTIFIER, EVENT, and each other scalar key uppercased (``component``
    -> COMPONENT). ``pid`` of an event about a component is COMPONENT_PID: the journal's
    own trusted _PID is the daemon's. Keys that are not plain names, nested values and
    ``timestamp`` are left to MESSAGE."""
    level = str(event.get("level", "info"))
    fields = [("MESSAGE", message), ("PRIORITY", str(_PRIORITY.get(level, 6))),
              ("SYSLOG_IDENTIFIER", identifier)]
    for key, value in event.items():
        if key in ("level", "timestamp") or not _KEY.fullmatch(key):
            continue
        if isinstance(value, bool) or value is None:
            text = "" if value is None else ("yes" if value else "no")
        elif isinstance(value, str | int | float):
            text = str(value)
        else:
            continue
        name = key.upper()
        if key == "pid" and "component" in event:
            name = "COMPONENT_PID"
        elif name in _RESERVED:
            name = f"FIELD_{name}"
        fields.append((name, text[:_MAX_VALUE]))
    return fields


def encode_entry(fields: list[tuple[str, str]]) -> bytes:
    """One native-protocol datagram (systemd's JOURNAL_NATIVE_PROTOCOL)."""
    out = bytearray()
    for name, value in fields:
        data = value.encode("utf-8", "backslashreplace")
        if b"\n" in data:
            out += name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalSink:
    """The last structlog processor: renders the event (``render``), sends it to the
    journal with its fields and drops it from the stream; returns the rendered line
    (printed on the stream instead) when the journal cannot be reached at all. An entry
    the journal's queue cannot take now is dropped and counted (``dropped``)."""

    def __init__(self, render: Callable[..., Any], *, identifier: str,
                 path: str = JOURNAL_SOCKET) -> None:
        self._render = render
        self._identifier = identifier
        self._path = path
        self._sock: socket.socket | None = None
        self.dropped = 0

    def __call__(self, logger: Any, method: str, event: Any) -> str:
        fields = dict(event)
        line = str(self._render(logger, method, event))
        payload = encode_entry(journal_fields(fields, line, self._identifier))
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM
                                           | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
            self._sock.sendto(payload, self._path)
        except BlockingIOError:
            self.dropped += 1
            raise structlog.DropEvent from None
        except OSError:
            return line  # no journal (or the entry is too big for it): the stream has it
        raise structlog.DropEvent


def make_sink(render: Callable[..., Any], identifier: str = "bitcoin-supervisor",
              stream: TextIO | None = None) -> JournalSink | None:
    """A JournalSink when ``stream`` (default stderr) is systemd's journal stream; None
    elsewhere. Never raises."""
    if not stream_is_journal(stream if stream is not None else sys.stderr):
        return None
    return JournalSink(render, identifier=identifier)
