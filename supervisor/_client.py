"""The CLI's side of the control socket: send one typed request, read the reply.

Imports nothing of the daemon (no asyncio, structlog, capnp or sandbox): every CLI call
pays for what this module loads, and ``status`` should cost little more than starting the
interpreter. ``tests/unit/test_cli_client.py`` keeps it that way.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from .control_protocol import (
    ControlError,
    ProtocolError,
    Reply,
    Request,
    parse_reply,
    request_to_json,
)

__all__ = ["MAX_RESPONSE_BYTES", "DaemonNotRunning", "decode_reply", "encode",
           "not_running", "request_sync"]

MAX_RESPONSE_BYTES = 16 * 1024 * 1024


class DaemonNotRunning(ControlError):
    """No daemon listens on the control socket (missing or stale socket file)."""


def encode(obj: dict[str, Any]) -> bytes:
    """One wire line: compact JSON and a newline."""
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def not_running(path: Path, exc: OSError) -> ControlError:
    """The error to raise when connecting to ``path`` failed with ``exc``."""
    if isinstance(exc, FileNotFoundError):
        return DaemonNotRunning(f"bitcoin-supervisor daemon is not running (no control "
                                f"socket at {path}); start it with `bitcoin-supervisor start`")
    if isinstance(exc, ConnectionRefusedError):
        return DaemonNotRunning(f"bitcoin-supervisor daemon is not running (stale control "
                                f"socket at {path}); start it with `bitcoin-supervisor start`")
    if isinstance(exc, PermissionError):
        return ControlError(f"permission denied on {path}: run as the daemon's user or root")
    return ControlError(f"cannot reach the daemon at {path}: {exc.strerror or exc}")


def decode_reply(path: Path, request: Request, line: bytes) -> Reply:
    """Parse the daemon's reply line to ``request``. Raises ControlError when the daemon
    hung up without answering or sent something that is not JSON, ProtocolError (naming
    the field) when the JSON does not match the protocol."""
    if not line.endswith(b"\n"):
        raise ControlError(f"the daemon at {path} closed the connection without answering")
    try:
        value = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ControlError(f"the daemon at {path} sent a reply that is not JSON") from exc
    try:
        return parse_reply(request, value)
    except ProtocolError as exc:
        raise ProtocolError(f"the daemon at {path} sent a malformed {request.verb} reply: "
                            f"{exc}") from None


def request_sync(path: Path | str, request: Request, *, timeout: float = 10.0) -> Reply:
    """Send ``request`` to the daemon at ``path`` and return its reply. Blocks up to
    ``timeout`` seconds.

    An ErrorReply is returned, not raised. Raises DaemonNotRunning when no daemon listens
    there, ControlError on timeout, permission or transport problems, ProtocolError when
    the reply does not match the protocol.
    """
    path = Path(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(os.fspath(path))
        except TimeoutError:
            raise ControlError(f"the daemon at {path} did not answer within "
                               f"{timeout:g} s") from None
        except OSError as exc:
            raise not_running(path, exc) from exc
        try:
            try:
                sock.sendall(encode(request_to_json(request)))
            except BrokenPipeError:
                pass  # it answered (refused us) and hung up first: the answer is still queued
            with sock.makefile("rb") as stream:
                line = stream.readline(MAX_RESPONSE_BYTES + 1)
        except TimeoutError:
            raise ControlError(f"the daemon at {path} did not answer within "
                               f"{timeout:g} s") from None
        except OSError as exc:
            raise ControlError(f"lost the connection to the daemon at {path}") from exc
    return decode_reply(path, request, line)
