"""Bind mode's link: a real program that listens on a unix socket of its own, dialled
with a deadline, never through a symlink the program planted."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from bitcoin_supervisor.interfaces import SpawnError
from bitcoin_supervisor.ipc import BindLauncher, LaunchRequest

# Listens on argv[1] after argv[2] seconds, answers one line, or exits at once ("exit").
_LISTENER = """
import os, socket, sys, time
path, mode = sys.argv[1], sys.argv[2]
if mode == "exit":
    sys.exit(3)
time.sleep(float(mode))
os.makedirs(os.path.dirname(path), exist_ok=True)
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen()
conn, _ = s.accept()
conn.sendall(b"hello\\n")
time.sleep(30)
"""


def _request(tmp_path: Path, mode: str, timeout: float = 10.0,
             socket_path: Path | None = None) -> LaunchRequest:
    path = socket_path or tmp_path / "net" / "node.sock"
    return LaunchRequest(argv=(sys.executable, "-c", _LISTENER, str(path), mode),
                         env={}, cwd=tmp_path, socket=path, link_timeout_s=timeout)


async def _launch_and_link(request: LaunchRequest) -> tuple[socket.socket | None, str]:
    endpoint = await BindLauncher().launch(request)
    try:
        sock = await endpoint.link()
    except SpawnError as exc:
        return None, str(exc)
    finally:
        endpoint.child.send_signal(9)
        await endpoint.child.wait()
        endpoint.child.close()
    return sock, ""


def test_a_socket_that_appears_late_is_dialled_when_it_does(tmp_path: Path) -> None:
    async def main() -> None:
        started = time.monotonic()
        endpoint = await BindLauncher().launch(_request(tmp_path, "0.5"))
        try:
            sock = await endpoint.link()
            elapsed = time.monotonic() - started
            reader, _ = await asyncio.open_unix_connection(sock=sock)
            assert await reader.readline() == b"hello\n"
            assert 0.5 <= elapsed < 3.0, elapsed  # found within the poll backoff's cap
        finally:
            endpoint.child.send_signal(9)
            await endpoint.child.wait()
    asyncio.run(main())


def test_a_socket_that_never_appears_fails_with_the_path_and_deadline(tmp_path: Path) -> None:
    sock, error = asyncio.run(_launch_and_link(_request(tmp_path, "60", timeout=0.3)))
    assert sock is None
    assert error == f"no socket at {tmp_path}/net/node.sock within 0.3 s"


def test_a_program_that_exits_before_listening_says_so(tmp_path: Path) -> None:
    sock, error = asyncio.run(_launch_and_link(_request(tmp_path, "exit")))
    assert sock is None
    assert error == f"exited (code 3) before listening on {tmp_path}/net/node.sock"


def test_a_socket_nobody_listens_on_is_refused_not_hung_on(tmp_path: Path) -> None:
    """A socket bound but never listened on (or left by a dead process) is retried
    until the deadline and then reported as refusing, not as missing."""
    path = tmp_path / "net" / "node.sock"
    path.parent.mkdir()
    holder = socket.socket(socket.AF_UNIX)
    holder.bind(str(path))  # bound, never listening: connect() says ECONNREFUSED

    async def main() -> str:
        endpoint = await BindLauncher().launch(_request(tmp_path, "60", timeout=0.3))
        # The launcher removed the stale socket first: our holder's file is gone.
        assert not path.exists()
        holder2 = socket.socket(socket.AF_UNIX)
        holder2.bind(str(path))
        try:
            await endpoint.link()
        except SpawnError as exc:
            return str(exc)
        finally:
            holder2.close()
            endpoint.child.send_signal(9)
            await endpoint.child.wait()
        return ""
    try:
        assert asyncio.run(main()) == f"{path} refused connections for 0.3 s (nothing listening)"
    finally:
        holder.close()


def test_a_planted_symlink_is_never_followed(tmp_path: Path) -> None:
    """The program owns its datadir: a symlink where its socket should be must not lead
    the supervisor to another service's socket."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = socket.socket(socket.AF_UNIX)
    other.bind(str(elsewhere / "other.sock"))
    other.listen()
    data = tmp_path / "data"
    (data / "net").mkdir(parents=True)
    request = _request(data, "60", timeout=0.3, socket_path=data / "net" / "node.sock")

    async def main() -> str:
        endpoint = await BindLauncher().launch(request)
        os.symlink(elsewhere / "other.sock", data / "net" / "node.sock")
        try:
            await endpoint.link()
        except SpawnError as exc:
            return str(exc)
        finally:
            endpoint.child.send_signal(9)
            await endpoint.child.wait()
        return ""
    try:
        assert asyncio.run(main()) == (f"{data}/net/node.sock is a symlink: refusing to "
                                       "connect")
    finally:
        other.close()


def test_a_socket_outside_the_datadir_is_refused_before_anything_runs(tmp_path: Path) -> None:
    request = _request(tmp_path / "data", "60", socket_path=tmp_path / "node.sock")
    with pytest.raises(SpawnError, match="is not inside the datadir"):
        asyncio.run(BindLauncher().launch(request))
