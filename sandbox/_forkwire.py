"""The fork server's control messages: one JSON object per SOCK_SEQPACKET datagram, with
descriptors passed alongside (SCM_RIGHTS), and the template's command line. Both ends
import this module.

Supervisor -> template: ``spawn`` {id, argv, env} with fds [ipc, stdout, stderr, plan,
*cgroup.procs]. Template -> supervisor: ``spawned`` {id, pid} with fds [pidfd] (made by
the clone itself: it names this child and never a recycled pid; the child is the
supervisor's, which waits for it through this pidfd), ``failed`` {id, error}.
"""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_FDS", "MAX_MESSAGE", "Message", "fork_server_argv", "receive", "send"]

MAX_MESSAGE = 1 << 20  # environment and argv: far below this
MAX_FDS = 16


def fork_server_argv(control_fd: int, entry: str, *, parent: int,
                     network: bool) -> tuple[str, ...]:
    """The template's command line. Pure. ``-I``: it runs as the supervisor's user, often
    root, so no environment variable may steer its imports. (Here, not in
    ``_forkserver``: the supervisor builds it without importing the confinement code.)"""
    return (sys.executable, "-I", "-m", "bitcoin_supervisor.sandbox._forkserver",
            "--control-fd", str(control_fd), "--entry", entry, "--parent", str(parent),
            *(() if network else ("--no-network",)))


@dataclass(frozen=True)
class Message:
    """One control message: ``op``, its fields, and the descriptors that came with it
    (owned by the receiver, which must close them)."""

    op: str
    fields: dict[str, Any]
    fds: tuple[int, ...] = ()


def send(sock: socket.socket, op: str, fds: tuple[int, ...] = (), **fields: Any) -> None:
    """Send one message (the fds are duplicated into the peer; the caller keeps its own).
    Raises OSError (the peer is gone, or a non-blocking socket is full)."""
    data = json.dumps({"op": op, **fields}).encode()
    socket.send_fds(sock, [data], list(fds))


def receive(sock: socket.socket) -> Message | None:
    """Receive one message; None at EOF (the peer closed its end). Raises OSError, or
    ValueError for a malformed message (its fds are closed first)."""
    data, fds, flags, _ = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
    if not data and not fds:
        return None
    try:
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            raise ValueError("truncated control message")
        raw = json.loads(data)
        if not isinstance(raw, dict) or not isinstance(raw.get("op"), str):
            raise ValueError("control message without an op")
    except ValueError:
        for fd in fds:
            _close(fd)
        raise
    op = raw.pop("op")
    return Message(op=op, fields=raw, fds=tuple(fds))


def _close(fd: int) -> None:
    try:
        socket.close(fd)
    except OSError:
        return
