"""Control socket over a real unix socket: permissions, protocol errors, liveness checks."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from bitcoin_supervisor.supervisor._control import (
    MAX_REQUEST_BYTES,
    ControlError,
    ControlServer,
    DaemonAlreadyRunning,
    DaemonNotRunning,
    RequestError,
    request,
    request_sync,
)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


async def echo(req: dict[str, Any]) -> dict[str, Any]:
    match req["verb"]:
        case "echo":
            return {"echo": req}
        case "refuse":
            raise RequestError("no such component 'gui'", 404)
        case "crash":
            raise RuntimeError("handler bug")
        case _:
            raise RequestError(f"unknown verb {req['verb']!r}")


@asynccontextmanager
async def serving(path: Path, handler: Handler = echo) -> AsyncIterator[ControlServer]:
    server = ControlServer(path, handler)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def raw_exchange(path: Path, *lines: bytes) -> list[dict[str, Any]]:
    """Send raw lines on one connection; return every response line until EOF."""
    reader, writer = await asyncio.open_unix_connection(str(path), limit=2**20)
    for line in lines:
        writer.write(line)
    await writer.drain()
    writer.write_eof()
    out = []
    while line := await reader.readline():
        out.append(json.loads(line))
    writer.close()
    return out


def test_round_trip_async_and_sync(tmp_path: Path) -> None:
    sock = tmp_path / "supervisor.sock"

    async def main() -> None:
        async with serving(sock):
            resp = await request(sock, {"verb": "echo", "name": "wallet"})
            assert resp == {"ok": True, "echo": {"verb": "echo", "name": "wallet"}}
            sync = await asyncio.to_thread(request_sync, sock, {"verb": "echo"})
            assert sync == {"ok": True, "echo": {"verb": "echo"}}
            refused = await request(sock, {"verb": "refuse"})
            assert refused == {"ok": False, "error": "no such component 'gui'", "code": 404}

    asyncio.run(main())


def test_socket_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    sock = tmp_path / "supervisor.sock"

    async def main() -> None:
        old = os.umask(0)
        try:
            async with serving(sock):
                st = os.stat(sock)
                assert stat.S_ISSOCK(st.st_mode)
                assert stat.S_IMODE(st.st_mode) == 0o600
        finally:
            os.umask(old)
        assert not sock.exists()  # close() removes it

    asyncio.run(main())


def test_malformed_requests_get_errors_and_the_server_lives_on(tmp_path: Path) -> None:
    sock = tmp_path / "supervisor.sock"

    async def main() -> None:
        async with serving(sock):
            responses = await raw_exchange(
                sock, b"{not json\n", b"[1, 2]\n", b'{"verb": 3}\n', b"\xff\xfe\n",
                b'{"verb": "echo"}\n')
            assert [r["ok"] for r in responses] == [False, False, False, False, True]
            assert responses[0]["code"] == 400
            assert responses[0]["error"].startswith("malformed request: not JSON")
            assert responses[1] == responses[2] == {
                "ok": False, "code": 400,
                "error": 'malformed request: expected an object with a string "verb"'}
            assert "\n" not in responses[0]["error"]
            assert (await request(sock, {"verb": "echo"}))["ok"] is True

    asyncio.run(main())


def test_handler_crash_is_logged_and_answered(tmp_path: Path) -> None:
    sock = tmp_path / "supervisor.sock"

    async def main() -> None:
        async with serving(sock):
            with capture_logs() as logs:
                resp = await request(sock, {"verb": "crash"})
            assert resp == {"ok": False, "error": "internal error; see the daemon log",
                            "code": 500}
            assert [e["event"] for e in logs] == ["control.request_failed"]
            assert logs[0]["verb"] == "crash"
            assert (await request(sock, {"verb": "echo"}))["ok"] is True

    asyncio.run(main())


def test_oversize_line_is_refused(tmp_path: Path) -> None:
    sock = tmp_path / "supervisor.sock"

    async def main() -> None:
        async with serving(sock):
            big = json.dumps({"verb": "echo", "pad": "x" * MAX_REQUEST_BYTES}).encode() + b"\n"
            reader, writer = await asyncio.open_unix_connection(str(sock))
            writer.write(big)
            line = await reader.readline()
            writer.close()
            assert json.loads(line) == {
                "ok": False, "code": 413,
                "error": f"request longer than {MAX_REQUEST_BYTES} bytes"}
            # Just under the limit still works.
            small = {"verb": "echo", "pad": "x" * (MAX_REQUEST_BYTES - 100)}
            assert (await request(sock, small))["ok"] is True

    asyncio.run(main())


def test_daemon_not_running_when_socket_absent(tmp_path: Path) -> None:
    sock = tmp_path / "supervisor.sock"
    with pytest.raises(DaemonNotRunning, match=f"no control socket at {sock}"):
        request_sync(sock, {"verb": "status"})
    with pytest.raises(DaemonNotRunning, match=f"no control socket at {sock}"):
        asyncio.run(request(sock, {"verb": "status"}))


def make_stale_socket(path: Path) -> None:
    """A socket file whose owner died: bound, never listening, closed."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))


def test_daemon_not_running_when_socket_stale(tmp_path: Path) -> None:
    sock = tmp_path / "supervisor.sock"
    make_stale_socket(sock)
    with pytest.raises(DaemonNotRunning, match=f"stale control socket at {sock}"):
        request_sync(sock, {"verb": "status"})
    with pytest.raises(DaemonNotRunning, match=f"stale control socket at {sock}"):
        asyncio.run(request(sock, {"verb": "status"}))


def test_stale_socket_is_replaced_on_start(tmp_path: Path) -> None:
    sock = tmp_path / "supervisor.sock"
    make_stale_socket(sock)

    async def main() -> None:
        async with serving(sock):
            assert (await request(sock, {"verb": "echo"}))["ok"] is True

    asyncio.run(main())


def test_second_server_refused_while_first_lives(tmp_path: Path) -> None:
    sock = tmp_path / "supervisor.sock"

    async def main() -> None:
        async with serving(sock):
            second = ControlServer(sock, echo)
            with pytest.raises(DaemonAlreadyRunning, match=f"already running on {sock}"):
                await second.start()
            # The refused server must not have disturbed the live one.
            assert (await request(sock, {"verb": "echo"}))["ok"] is True
        # Once the first is gone, a new one starts.
        async with serving(sock):
            assert (await request(sock, {"verb": "echo"}))["ok"] is True

    asyncio.run(main())


def test_live_socket_without_lock_is_not_stolen(tmp_path: Path) -> None:
    # Something (e.g. an older daemon that predates the lock file) listens on the path.
    sock = tmp_path / "supervisor.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(sock))
        listener.listen()
        with pytest.raises(DaemonAlreadyRunning, match="already listening"):
            asyncio.run(ControlServer(sock, echo).start())
    assert sock.exists()


def test_non_socket_file_in_the_way(tmp_path: Path) -> None:
    sock = tmp_path / "supervisor.sock"
    sock.write_text("precious")
    with pytest.raises(ControlError, match="is not a socket"):
        asyncio.run(ControlServer(sock, echo).start())
    assert sock.read_text() == "precious"


def test_too_long_path(tmp_path: Path) -> None:
    sock = tmp_path / ("d" * 120) / "supervisor.sock"
    with pytest.raises(ControlError, match="control socket path is too long"):
        asyncio.run(ControlServer(sock, echo).start())


def test_timeout_when_daemon_does_not_answer(tmp_path: Path) -> None:
    sock = tmp_path / "supervisor.sock"

    async def hang(req: dict[str, Any]) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    async def main() -> None:
        async with serving(sock, hang):
            with pytest.raises(ControlError, match="did not answer within 0.2 s"):
                await request(sock, {"verb": "x"}, timeout=0.2)

    asyncio.run(main())


CLIENT = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b'{"verb": "echo"}\\n')
print(s.makefile().readline(), end="")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
def test_other_uid_is_refused(tmp_path: Path) -> None:
    # The user nobody must reach the socket at all for SO_PEERCRED to be the guard:
    # a world-traversable directory and a socket opened up on purpose.
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        os.chmod(tmp, 0o755)
        sock = Path(tmp) / "supervisor.sock"

        async def main() -> None:
            async with serving(sock):
                os.chmod(sock, 0o666)
                with capture_logs() as logs:
                    proc = await asyncio.create_subprocess_exec(
                        "/usr/bin/python3", "-c", CLIENT, str(sock), user=65534,
                        stdout=subprocess.PIPE)
                    out, _ = await proc.communicate()
                assert json.loads(out) == {
                    "ok": False, "code": 403,
                    "error": "permission denied: only the daemon's user and root may use "
                             "this socket"}
                assert [(e["event"], e["uid"]) for e in logs] == [("control.refused", 65534)]

        asyncio.run(main())
