"""``ipcbind = "unix"``'s socket: created 0600 without following a symlink, a stale one
replaced, anything else at its name refused; at most MAX_CONNECTIONS clients served."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import pytest
from _ipc_roles import PROTOCOL

from bitcoin_supervisor.interfaces import Echo, Init
from bitcoin_supervisor.ipc import MAX_CONNECTIONS, listen_unix, serve_listener


def test_the_socket_is_0600_and_a_stale_one_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "node.sock"
    first = listen_unix(path)
    mode = os.lstat(path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    first.close()  # a killed node leaves the file behind
    # Binding over the old file would fail (EADDRINUSE): it was removed first.
    second = listen_unix(path)
    try:
        client = socket.socket(socket.AF_UNIX)
        client.connect(str(path))
        client.close()
    finally:
        second.close()


def test_a_symlink_at_its_name_is_removed_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    path = tmp_path / "node.sock"
    path.symlink_to(target)
    listen_unix(path).close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert target.read_text() == "keep me"


def test_a_file_at_its_name_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "node.sock"
    path.write_text("not a socket")
    with pytest.raises(ValueError, match="exists and is not a socket"):
        listen_unix(path)
    assert path.read_text() == "not a socket"


def test_a_symlinked_directory_is_not_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(OSError):
        listen_unix(tmp_path / "link" / "node.sock")
    assert not (real / "node.sock").exists()


class _Init(Init):
    async def make_echo(self) -> Echo:
        raise AssertionError("not called here")


def test_clients_beyond_the_limit_are_closed_at_accept(tmp_path: Path) -> None:
    path = tmp_path / "node.sock"

    async def main() -> bytes:
        serving = asyncio.ensure_future(serve_listener(PROTOCOL, listen_unix(path),
                                                       _Init(), name="node"))
        loop = asyncio.get_running_loop()
        clients = []
        try:
            for _ in range(MAX_CONNECTIONS):
                client = socket.socket(socket.AF_UNIX)
                client.setblocking(False)
                await loop.sock_connect(client, str(path))
                clients.append(client)
            extra = socket.socket(socket.AF_UNIX)
            extra.setblocking(False)
            await loop.sock_connect(extra, str(path))
            clients.append(extra)
            # The listener closes it: EOF (b"") instead of a served link.
            return await asyncio.wait_for(loop.sock_recv(extra, 1), 60)
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
            for client in clients:
                client.close()
    assert PROTOCOL.run(main) == b""
