"""The daemon's control socket server, and an asyncio twin of the CLI's client.

The messages are ``control_protocol``'s; the server parses each request line into a typed
request before the handler sees it. Only the daemon's own uid and root may connect
(SO_PEERCRED), the socket is mode 0600 from the moment it exists, and a bad request gets
an error reply, never kills the server.
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

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = Path(path)
        self._handler = handler
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
        st = os.lstat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        sock.setblocking(False)
        return sock

    # -- serving -------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            if not self._peer_allowed(writer):
                writer.write(_error("permission denied: only the daemon's user and root "
                                    "may use this socket", ErrorCode.FORBIDDEN))
                await writer.drain()
                return
            while True:
                try:
                    line = await reader.readline()
                except ValueError:
                    writer.write(_error(f"request longer than {MAX_REQUEST_BYTES} bytes",
                                        ErrorCode.TOO_LARGE))
                    await writer.drain()
                    return
                if not line:
                    return
                writer.write(await self._respond(line))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            # The client went away mid-exchange: nothing to answer.
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    def _peer_allowed(self, writer: asyncio.StreamWriter) -> bool:
        sock = writer.get_extra_info("socket")
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
        if uid in (os.geteuid(), 0):
            return True
        self._log.warning("control.refused", pid=pid, uid=uid)
        return False

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
