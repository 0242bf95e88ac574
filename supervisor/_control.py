"""The daemon's control socket server, and an asyncio twin of the CLI's client.

The messages are ``control_protocol``'s; the server parses each request line into a typed
request before the handler sees it. Only the daemon's own uid, root and an optional group
may connect (SO_PEERCRED and SO_PEERGROUPS on every connection), the socket is mode 0600
(0660 with a group) from the moment it exists, and a bad request gets an error reply,
never kills the server. Any local user who can reach the socket may still be hostile: a
request line is size- and time-limited, a reply the client does not read times out, the
number of open connections is capped, and the server yields to the loop after every
request, so a client that sends nothing, garbage or a flood stalls neither the daemon
nor other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bitcoin_supervisor.interfaces import SupervisorError
from bitcoin_supervisor.log import get_logger

from ._client import (
    MAX_RESPONSE_BYTES,
    DaemonNotRunning,
    decode_reply,
    encode,
    not_running,
    request_sync,
)
from .control_protocol import (
    ControlError,
    ErrorCode,
    ErrorReply,
    ProtocolError,
    Reply,
    Request,
    parse_request,
    request_to_json,
)

__all__ = [
    "MAX_REQUEST_BYTES",
    "ControlError",
    "ControlServer",
    "DaemonAlreadyRunning",
    "DaemonNotRunning",
    "RequestError",
    "request",
    "request_sync",
]

MAX_REQUEST_BYTES = 64 * 1024
# Time a client has to deliver one whole request line, and to take one reply.
REQUEST_TIMEOUT_S = 10.0
# Connections one uid may hold open at once; more are answered BUSY and closed (the CLI
# opens one). Per uid: one group member's flood cannot lock out root or the other members.
MAX_CLIENTS_PER_UID = 16
# A refused or busy connection is logged at most once a second (with how many were not).
_LOG_INTERVAL_S = 1.0
# SO_PEERGROUPS (Linux 4.13+): the peer's supplementary groups at connect time.
_SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107

Handler = Callable[[Request], Awaitable[Reply]]


class DaemonAlreadyRunning(ControlError):
    """Another live daemon already owns the control socket."""


class RequestError(SupervisorError):
    """Raised by a handler to answer with ``ErrorReply(code, message)``."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> None:
        super().__init__(message)
        self.code = code


def _error(message: str, code: ErrorCode) -> bytes:
    return encode(ErrorReply(code, message).to_json())


class ControlServer:
    """Serves ``handler`` on a unix socket at ``path``.

    ``handler`` gets each well-formed request and returns its reply; it may raise
    RequestError for an error reply. Malformed requests never reach it.
    """

    def __init__(self, path: Path, handler: Handler, *, group: int | None = None,
                 request_timeout: float = REQUEST_TIMEOUT_S,
                 max_clients_per_uid: int = MAX_CLIENTS_PER_UID) -> None:
        self.path = Path(path)
        self._handler = handler
        self._group = group
        self._timeout = request_timeout
        self._max_clients = max_clients_per_uid
        self._open: dict[int, int] = {}  # connections held, by peer uid
        self._throttles = {"control.refused": _Throttle(), "control.busy": _Throttle()}
        self._server: asyncio.Server | None = None
        self._lock_fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._log = get_logger(socket=str(self.path))

    async def start(self) -> None:
        """Create the socket and start serving; returns once it accepts connections.

        Raises DaemonAlreadyRunning when another daemon holds the socket, ControlError
        when the socket cannot be created (path too long, missing directory, a non-socket
        file in the way). A stale socket file left by a dead daemon is replaced.
        """
        if len(os.fsencode(self.path)) > _MAX_SOCKET_PATH:
            raise ControlError(f"control socket path is too long ({self.path}): unix "
                               f"sockets allow {_MAX_SOCKET_PATH} bytes; use a shorter datadir")
        self._lock()
        try:
            self._clear_stale()
            sock = self._bind()
            self._server = await asyncio.start_unix_server(
                self._serve, sock=sock, limit=MAX_REQUEST_BYTES)
        except BaseException:
            self._unlock()
            raise
        self._log.info("control.listening")

    async def close(self) -> None:
        """Stop serving, drop open connections and remove the socket file (only if it
        is still ours). Idempotent; never raises."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            with contextlib.suppress(OSError):
                await self._server.wait_closed()
            self._server = None
        if self._inode is not None:
            with contextlib.suppress(OSError):
                st = os.lstat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.path)
            self._inode = None
        self._unlock()

    # -- start-up ------------------------------------------------------------------------

    def _lock(self) -> None:
        # A lock file makes "is another daemon starting or running?" atomic; probing the
        # socket alone races when two daemons start together. The file is never removed:
        # unlinking a lock file lets a later opener lock a different inode.
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ControlError(f"cannot create {lock_path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DaemonAlreadyRunning(
                f"another bitcoin-supervisor daemon is already running on {self.path}: "
                "stop it first or use another datadir") from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _clear_stale(self) -> None:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ControlError(f"{self.path} exists and is not a socket: refusing to "
                               "replace it; move it away")
        if _answers(self.path):
            raise DaemonAlreadyRunning(
                f"another bitcoin-supervisor daemon is already listening on {self.path}: "
                "stop it first or use another datadir")
        os.unlink(self.path)
        self._log.info("control.stale_removed")

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # umask, not chmod after bind: the socket must never exist with looser
        # permissions, not even for a moment. umask is process-wide, but bind is brief
        # and the daemon binds before it starts worker threads.
        old = os.umask(0o177)
        try:
            sock.bind(os.fspath(self.path))
        except OSError as exc:
            sock.close()
            raise ControlError(f"cannot create control socket {self.path}: "
                               f"{exc.strerror}") from exc
        finally:
            os.umask(old)
        if self._group is not None:
            self._open_to_group(self._group)
        st = os.lstat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        sock.setblocking(False)
        return sock

    def _open_to_group(self, gid: int) -> None:
        """Let ``gid`` reach the socket: the socket 0660 and its directory group-traversable
        (0710: members can reach names they know, list nothing)."""
        try:
            os.chown(self.path, -1, gid)
            os.chmod(self.path, 0o660)
            parent = self.path.parent
            if os.stat(parent).st_uid == os.geteuid():
                os.chown(parent, -1, gid)
                os.chmod(parent, 0o710)
        except OSError as exc:
            raise ControlError(f"cannot open the control socket {self.path} to group "
                               f"{gid}: {exc.strerror}") from exc

    # -- serving -------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        pid, uid, gid = _peer_creds(writer)
        if not self._peer_allowed(writer, uid, gid):
            self._note("control.refused", pid=pid, uid=uid, gid=gid)
            writer.write(_error(self._forbidden(), ErrorCode.FORBIDDEN))
            writer.close()  # a short line: the socket buffer takes it at once
            return
        if self._open.get(uid, 0) >= self._max_clients:
            self._note("control.busy", pid=pid, uid=uid, limit=self._max_clients)
            writer.write(_error(f"too many control connections of uid {uid} (limit "
                                f"{self._max_clients}); try again", ErrorCode.BUSY))
            writer.close()
            return
        self._open[uid] = self._open.get(uid, 0) + 1
        self._writers.add(writer)
        try:
            await self._converse(reader, writer)
        except TimeoutError:
            writer.transport.abort()  # it does not read its replies: drop them, no wait
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-exchange: nothing to answer
        finally:
            self._open[uid] -= 1
            self._writers.discard(writer)
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        """Answer request lines until EOF, an oversize line or a client too slow to send
        one; TimeoutError when it does not take a reply in time."""
        while True:
            try:
                async with asyncio.timeout(self._timeout):
                    line = await reader.readline()
            except ValueError:
                await self._send(writer, _error(f"request longer than {MAX_REQUEST_BYTES} "
                                                "bytes", ErrorCode.TOO_LARGE))
                return
            except TimeoutError:
                self._log.info("control.timed_out", timeout_s=self._timeout)
                await self._send(writer, _error(f"no complete request within "
                                                f"{self._timeout:g} s", ErrorCode.TIMEOUT))
                return
            if not line:
                return
            await self._send(writer, await self._respond(line))
            # A client with many requests queued up must not hold the loop: brokered
            # calls and other clients get their turn between its requests.
            await asyncio.sleep(0)

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Write one reply; TimeoutError if the client does not take it in time."""
        writer.write(data)
        async with asyncio.timeout(self._timeout):
            await writer.drain()

    def _note(self, event: str, **fields: object) -> None:
        """Log a refusal, at most once a second: a connection flood is not a log flood."""
        suppressed = self._throttles[event].admit()
        if suppressed is not None:
            self._log.warning(event, suppressed=suppressed, **fields)

    def _forbidden(self) -> str:
        who = "the daemon's user and root" if self._group is None else (
            f"the daemon's user, root and group {self._group}")
        return f"permission denied: only {who} may use this socket"

    def _peer_allowed(self, writer: asyncio.StreamWriter, uid: int, gid: int) -> bool:
        if uid in (os.geteuid(), 0):
            return True
        return self._group is not None and (
            gid == self._group or self._group in _peer_groups(writer.get_extra_info("socket")))

    async def _respond(self, line: bytes) -> bytes:
        try:
            request = parse_request(json.loads(line))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _error(f"malformed request: not JSON ({exc})", ErrorCode.BAD_REQUEST)
        except RecursionError:
            return _error("malformed request: nested too deeply", ErrorCode.BAD_REQUEST)
        except ProtocolError as exc:
            return _error(f"malformed request: {exc}", ErrorCode.BAD_REQUEST)
        try:
            # Encoded here: a reply that cannot be encoded is a handler bug, answered 500.
            return encode((await self._handler(request)).to_json())
        except RequestError as exc:
            return _error(str(exc), exc.code)
        except Exception:  # noqa: BLE001 - loop boundary: a bad request must not stop the daemon
            self._log.exception("control.request_failed", verb=request.verb.value)
            return _error("internal error; see the daemon log", ErrorCode.INTERNAL)


class _Throttle:
    """Admits one event a second; says how many it held back since the last one."""

    def __init__(self) -> None:
        self._last = -_LOG_INTERVAL_S
        self._held = 0

    def admit(self) -> int | None:
        now = time.monotonic()
        if now - self._last < _LOG_INTERVAL_S:
            self._held += 1
            return None
        held, self._held, self._last = self._held, 0, now
        return held


def _peer_creds(writer: asyncio.StreamWriter) -> tuple[int, int, int]:
    """(pid, uid, gid) of the peer when it connected (SO_PEERCRED)."""
    sock = writer.get_extra_info("socket")
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return int(pid), int(uid), int(gid)


def _peer_groups(sock: socket.socket) -> tuple[int, ...]:
    """The peer's supplementary groups when it connected (empty if the kernel cannot
    say)."""
    size = 4 * 256
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, size)
    except OSError:
        return ()
    return struct.unpack(f"{len(raw) // 4}I", raw[:len(raw) // 4 * 4])


def _answers(path: Path) -> bool:
    """True when something accepts connections on the unix socket at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError as exc:
            # EAGAIN: backlog full, so a live daemon is there but busy.
            return exc.errno == errno.EAGAIN
        return True


async def request(path: Path | str, request: Request, *, timeout: float = 10.0) -> Reply:
    """Send ``request`` to the daemon at ``path`` and return its reply; the asyncio twin
    of ``request_sync`` (same contract) for code that runs in an event loop. Does not
    block the loop."""
    path = Path(path)
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_unix_connection(
                    os.fspath(path), limit=MAX_RESPONSE_BYTES)
            except OSError as exc:
                raise not_running(path, exc) from exc
            try:
                writer.write(encode(request_to_json(request)))
                await writer.drain()
                line = await reader.readline()
            except (OSError, ValueError) as exc:
                raise ControlError(f"lost the connection to the daemon at {path}") from exc
            finally:
                writer.close()
    except TimeoutError:
        raise ControlError(f"the daemon at {path} did not answer within {timeout:g} s") from None
    return decode_reply(path, request, line)
