"""Serving Init on a unix socket of our own (``ipcbind = "unix"``), beside the inherited
link: how Bitcoin Core's tools reach our node the way they reach ``bitcoin-node
-ipcbind=unix``."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
from pathlib import Path

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import Init

from ._protocol import Protocol

__all__ = ["MAX_CONNECTIONS", "listen_unix", "serve_listener"]

MAX_CONNECTIONS = 16
"""Clients served at once on one listener; more are closed at accept (a local client
opening connections in a loop must not exhaust the role's descriptors)."""

_logger = log.get_logger()


def listen_unix(path: Path) -> socket.socket:
    """Return a non-blocking socket listening on ``path`` (mode 0600).

    The directory is opened without following a symlink at its last component and the
    socket is bound through that descriptor; bind never follows a symlink at the socket's
    own name. A socket or symlink left there (a previous run's) is removed first;
    anything else there raises ValueError (one line: what to remove). OSError for the
    directory or the bind itself.
    """
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _remove_stale(directory, path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        # The umask makes bind create the file as 0600 at once: a chmod afterwards would
        # leave a moment in which the socket is open to the directory's other readers.
        old = os.umask(0o177)
        try:
            sock.bind(f"/proc/self/fd/{directory}/{path.name}")
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        sock.listen(MAX_CONNECTIONS)
        sock.setblocking(False)
        return sock
    finally:
        os.close(directory)


def _remove_stale(directory: int, path: Path) -> None:
    try:
        mode = os.lstat(path.name, dir_fd=directory).st_mode
    except FileNotFoundError:
        return
    if not (stat.S_ISSOCK(mode) or stat.S_ISLNK(mode)):
        raise ValueError(f"{path} exists and is not a socket: remove it, or turn ipcbind off")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path.name, dir_fd=directory)


async def serve_listener(protocol: Protocol, listener: socket.socket, init: Init, *,
                         name: str, debug: bool = False) -> None:
    """Accept clients on ``listener`` for ever, serving ``init`` to each on its own link.

    Never returns; cancelling it stops accepting, ends every client's link and closes
    the listener. At most ``MAX_CONNECTIONS`` clients at once: a further one is closed
    on accept (logged ``ipc.refused``). A failed accept (EMFILE...) is logged and retried
    after a short pause rather than ending the role.
    """
    loop = asyncio.get_running_loop()
    clients: set[asyncio.Task[None]] = set()
    try:
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:
                _logger.warning("ipc.accept_failed", component=name,
                                error=errno.errorcode.get(exc.errno or 0, str(exc)))
                await asyncio.sleep(0.1)  # a full fd table clears as clients leave
                continue
            if len(clients) >= MAX_CONNECTIONS:
                conn.close()
                _logger.warning("ipc.refused", component=name, reason="too many clients",
                                limit=MAX_CONNECTIONS)
                continue
            task = asyncio.create_task(protocol.serve(conn, init, name=name, debug=debug))
            clients.add(task)
            task.add_done_callback(clients.discard)
    finally:
        for task in list(clients):
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        listener.close()
