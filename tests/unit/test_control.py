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
from bitcoin_supervisor.supervisor.control_protocol import (
    Accepted,
    ComponentReply,
    ComponentStatus,
    ErrorCode,
    ErrorReply,
    ProtocolError,
    Reply,
    Request,
    RestartRequest,
    ShutdownRequest,
    StartRequest,
    StatusReply,
    StatusRequest,
    StopRequest,
    SupervisorInfo,
)

Handler = Callable[[Request], Awaitable[Reply]]
SUPERVISOR = SupervisorInfo(pid=1, uptime_s=2.5, config="/c.toml", datadir="/d")


def component(name: str) -> ComponentStatus:
    return ComponentStatus(name=name, role="wallet", state="active", substate="running",
                           reason="none", pid=42, restarts=0, uptime_s=1.0, since=1.0,
                           last_exit=None, datadir=f"/d/{name}", sandbox=None)


async def echo(req: Request) -> Reply:
    """A stand-in daemon: status lists the asked name, stop of "gui" is refused, restart
    of "crash" is a handler bug, shutdown is accepted."""
    match req:
        case StatusRequest(name=name):
            return StatusReply(SUPERVISOR, (component(name or "all"),))
        case StopRequest(name="gui"):
            raise RequestError("no such component 'gui'", ErrorCode.UNKNOWN_COMPONENT)
        case RestartRequest(name="crash"):
            raise RuntimeError("handler bug")
        case StartRequest(name=name) | StopRequest(name=name) | RestartRequest(name=name):
            return ComponentReply(component(name))
        case ShutdownRequest():
            return Accepted()


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
            resp = await request(sock, StatusRequest("wallet"))
            assert resp == StatusReply(SUPERVISOR, (component("wallet"),))
            sync = await asyncio.to_thread(request_sync, sock, RestartRequest("index"))
            assert sync == ComponentReply(component("index"))
            assert await request(sock, ShutdownRequest()) == Accepted()
            refused = await request(sock, StopRequest("gui"))
            assert refused == ErrorReply(ErrorCode.UNKNOWN_COMPONENT, "no such component 'gui'")

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
                b'{"verb": "stop"}\n', b'{"verb": "stop", "name": "x", "force": true}\n',
                b'{"verb": "status", "name": 7}\n', b'{"verb": "status"}\n')
            assert [r["ok"] for r in responses] == [False] * 7 + [True]
            assert all(r["code"] == 400 for r in responses[:7])
            assert responses[0]["error"].startswith("malformed request: not JSON")
            assert [r["error"] for r in responses[1:3] + responses[4:7]] == [
                "malformed request: expected an object, got array",
                "malformed request: verb: expected one of 'status', 'start', 'stop', "
                "'restart', 'shutdown', 'reload', got 3",
                "malformed request: name: missing",
                "malformed request: force: unknown key; expected one of verb, name",
                "malformed request: name: expected a string or null, got integer"]
            assert all("\n" not in r["error"] for r in responses[:7])
            assert isinstance(await request(sock, StatusRequest()), StatusReply)

    asyncio.run(main())


def test_handler_crash_is_logged_and_answered(tmp_path: Path) -> None:
    sock = tmp_path / "supervisor.sock"

    async def main() -> None:
        async with serving(sock):
            with capture_logs() as logs:
                resp = await request(sock, RestartRequest("crash"))
            assert resp == ErrorReply(ErrorCode.INTERNAL, "internal error; see the daemon log")
            assert [e["event"] for e in logs] == ["control.request_failed"]
            assert logs[0]["verb"] == "restart"
            assert isinstance(await request(sock, StatusRequest()), StatusReply)

    asyncio.run(main())


def test_oversize_line_is_refused(tmp_path: Path) -> None:
    sock = tmp_path / "supervisor.sock"

    async def main() -> None:
        async with serving(sock):
            big = json.dumps({"verb": "stop", "name": "x" * MAX_REQUEST_BYTES}).encode() + b"\n"
            reader, writer = await asyncio.open_unix_connection(str(sock))
            writer.write(big)
            line = await reader.readline()
            writer.close()
            assert json.loads(line) == {
                "ok": False, "code": 413,
                "error": f"request longer than {MAX_REQUEST_BYTES} bytes"}
            # Just under the limit still works.
            small = StopRequest("x" * (MAX_REQUEST_BYTES - 100))
            assert await request(sock, small) == ComponentReply(component(small.name))

    asyncio.run(main())


def test_daemon_not_running_when_socket_absent(tmp_path: Path) -> None:
    sock = tmp_path / "supervisor.sock"
    with pytest.raises(DaemonNotRunning, match=f"no control socket at {sock}"):
        request_sync(sock, StatusRequest())
    with pytest.raises(DaemonNotRunning, match=f"no control socket at {sock}"):
        asyncio.run(request(sock, StatusRequest()))


def make_stale_socket(path: Path) -> None:
    """A socket file whose owner died: bound, never listening, closed."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))


def test_daemon_not_running_when_socket_stale(tmp_path: Path) -> None:
    sock = tmp_path / "supervisor.sock"
    make_stale_socket(sock)
    with pytest.raises(DaemonNotRunning, match=f"stale control socket at {sock}"):
        request_sync(sock, StatusRequest())
    with pytest.raises(DaemonNotRunning, match=f"stale control socket at {sock}"):
        asyncio.run(request(sock, StatusRequest()))


def test_stale_socket_is_replaced_on_start(tmp_path: Path) -> None:
    sock = tmp_path / "supervisor.sock"
    make_stale_socket(sock)

    async def main() -> None:
        async with serving(sock):
            assert isinstance(await request(sock, StatusRequest()), StatusReply)

    asyncio.run(main())


def test_second_server_refused_while_first_lives(tmp_path: Path) -> None:
    sock = tmp_path / "supervisor.sock"

    async def main() -> None:
        async with serving(sock):
            second = ControlServer(sock, echo)
            with pytest.raises(DaemonAlreadyRunning, match=f"already running on {sock}"):
                await second.start()
            # The refused server must not have disturbed the live one.
            assert isinstance(await request(sock, StatusRequest()), StatusReply)
        # Once the first is gone, a new one starts.
        async with serving(sock):
            assert isinstance(await request(sock, StatusRequest()), StatusReply)

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

    async def hang(req: Request) -> Reply:
        await asyncio.Event().wait()
        return Accepted()

    async def main() -> None:
        async with serving(sock, hang):
            with pytest.raises(ControlError, match="did not answer within 0.2 s"):
                await request(sock, ShutdownRequest(), timeout=0.2)

    asyncio.run(main())


CLIENT = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"verb": "status"}\\n')
except BrokenPipeError:
    pass  # refused and closed before we wrote: the answer is still there to read
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


@asynccontextmanager
async def fake_daemon(path: Path, answer: bytes) -> AsyncIterator[None]:
    """A socket that answers every request line with ``answer``, whatever it was."""
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(reply, str(path))
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(("answer", "error", "message"), [
    (b'{"ok": true, "supervisor": {"pid": 1, "uptime_s": 1, "config": "c", "datadir": "d"},'
     b' "components": [{"name": 1}]}\n', ProtocolError,
     "sent a malformed status reply: components[0].name: expected a string, got integer"),
    (b'{"ok": true, "components": []}\n', ProtocolError,
     "sent a malformed status reply: supervisor: missing"),
    (b'{"ok": false, "code": 999, "error": "?"}\n', ProtocolError,
     "sent a malformed status reply: code: expected one of 400, 403, 404, 408, 409, 413, 422, "
     "500, 503, got 999"),
    (b'{"ok": "yes"}\n', ProtocolError,
     "sent a malformed status reply: ok: expected a boolean, got string"),
    (b"<html>\n", ControlError, "sent a reply that is not JSON"),
    (b'{"ok": true', ControlError, "closed the connection without answering"),
])
def test_malformed_replies_raise_one_precise_error(
        tmp_path: Path, answer: bytes, error: type[Exception], message: str) -> None:
    sock = tmp_path / "supervisor.sock"

    async def main() -> None:
        async with fake_daemon(sock, answer):
            with pytest.raises(error) as raised:
                await request(sock, StatusRequest())
            assert str(raised.value) == f"the daemon at {sock} {message}"
            with pytest.raises(error) as raised:
                await asyncio.to_thread(request_sync, sock, StatusRequest())
            assert str(raised.value) == f"the daemon at {sock} {message}"

    asyncio.run(main())
