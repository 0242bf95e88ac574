"""Bind mode: the program listens on a unix socket of its own and the supervisor dials it.

Bitcoin Core's ``bitcoin-node -ipcbind=unix`` serves Init on ``<datadir>/<net>/node.sock``
instead of an inherited fd (v30 starts no node with ``-ipcfd``). The socket lies in a
directory the confined program owns, so nothing there is trusted: the path is walked from
the datadir with ``O_NOFOLLOW`` at every step and the connection goes through the
descriptor of the socket inode itself (``/proc/self/fd/N``), so a symlink the program
planted can never point the supervisor at another service's socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
from pathlib import Path, PurePosixPath

from bitcoin_supervisor.interfaces import SpawnError

from ._launch import (
    FD_PLACEHOLDER,
    ChildHandle,
    Endpoint,
    Launcher,
    LaunchRequest,
    resolve_executable,
    spawn_process,
)

__all__ = ["BindLauncher", "socket_below"]

# Polling instead of inotify: the directory may not exist yet (bitcoin-node creates
# <datadir>/regtest/ itself) and an inotify watch per path component is more code than
# a probe every 100 ms at most costs.
_FIRST_POLL_S = 0.002
_MAX_POLL_S = 0.1
_NOT_YET = (errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN, errno.ENOTDIR)


def socket_below(root: Path, path: Path) -> PurePosixPath:
    """``path`` relative to ``root``; raises SpawnError if it is not strictly below it
    (or goes through ``..``): the socket must live in the component's own datadir."""
    try:
        relative = PurePosixPath(path.relative_to(root))
    except ValueError:
        raise SpawnError(f"socket {path} is not inside the datadir {root}") from None
    if not relative.parts or ".." in relative.parts:
        raise SpawnError(f"socket {path} is not inside the datadir {root}")
    return relative


class BindLauncher(Launcher):
    """Starts the program with its own argv (no inherited fd) and returns an endpoint
    whose ``link()`` waits for ``request.socket`` and connects to it."""

    async def launch(self, request: LaunchRequest) -> Endpoint:
        if request.socket is None or request.cwd is None:
            raise SpawnError("bind mode needs a socket path inside the component's datadir")
        if any(FD_PLACEHOLDER in arg for arg in (*request.wrapper, *request.argv)):
            raise SpawnError(f"bind mode passes no fd: {FD_PLACEHOLDER} has no value")
        root, path = request.cwd, request.socket
        relative = socket_below(root, path)
        loop = asyncio.get_running_loop()
        argv = [*request.wrapper, *request.argv]
        argv[0] = resolve_executable(argv[0])
        if request.wrapper:  # the program itself, too, must exist before anything starts
            first = len(request.wrapper)
            argv[first] = resolve_executable(argv[first])
        # A socket left by the previous run would accept nothing (or, if some process
        # still held it, the wrong peer): the new run's own must be the one dialled.
        await loop.run_in_executor(None, _remove_stale, root, relative)
        child = await spawn_process(argv, request, request.pass_fds)

        async def dial() -> socket.socket:
            return await _dial(root, relative, child, request.link_timeout_s)
        return Endpoint(sock=None, child=child, dial=dial)


async def _dial(root: Path, relative: PurePosixPath, child: ChildHandle,
                timeout: float) -> socket.socket:
    """Poll for the socket with a bounded backoff and connect; raises SpawnError naming
    the path when the deadline passes or the child exits first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = _FIRST_POLL_S
    seen = False  # the socket existed at least once (then it refused us)
    path = root / relative
    while True:
        if child.returncode is not None:
            raise SpawnError(f"exited ({_status(child.returncode)}) before listening "
                             f"on {path}")
        try:
            return await loop.run_in_executor(None, _connect, root, relative)
        except OSError as exc:
            if exc.errno not in _NOT_YET:
                raise SpawnError(f"cannot connect to {path}: {exc.strerror}") from exc
            seen = seen or exc.errno in (errno.ECONNREFUSED, errno.EAGAIN)
        remaining = deadline - loop.time()
        if remaining <= 0:
            if seen:
                raise SpawnError(f"{path} refused connections for {timeout:g} s "
                                 "(nothing listening)")
            raise SpawnError(f"no socket at {path} within {timeout:g} s")
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, _MAX_POLL_S)


def _open_below(root: Path, relative: PurePosixPath) -> int:
    """An ``O_PATH`` descriptor of ``root/relative`` reached without following any
    symlink below ``root``. Raises OSError (ENOENT while it does not exist yet)."""
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in relative.parts:
            flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
            following = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = following
    except BaseException:
        os.close(fd)
        raise
    return fd


def _connect(root: Path, relative: PurePosixPath) -> socket.socket:
    """One attempt: open the socket inode safely and connect through its descriptor.
    Blocking only on local metadata (call from an executor)."""
    fd = _open_below(root, relative)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISSOCK(mode):
            kind = "a symlink" if stat.S_ISLNK(mode) else "not a socket"
            raise SpawnError(f"{root / relative} is {kind}: refusing to connect")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Non-blocking: a full backlog is EAGAIN (retried), never a stuck thread.
            sock.setblocking(False)
            sock.connect(f"/proc/self/fd/{fd}")
        except BaseException:
            sock.close()
            raise
        return sock
    finally:
        os.close(fd)


def _remove_stale(root: Path, relative: PurePosixPath) -> None:
    """Unlink a socket left at ``root/relative`` (only a socket, never through a
    symlink); a missing path or directory is fine."""
    *dirs, name = relative.parts
    try:
        parent = _open_below(root, PurePosixPath(*dirs)) if dirs else os.open(
            root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                os.unlink(name, dir_fd=parent)
    finally:
        os.close(parent)


def _status(returncode: int) -> str:
    return f"signal {-returncode}" if returncode < 0 else f"code {returncode}"
