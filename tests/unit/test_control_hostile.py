"""Hostile clients of the control socket (real unix sockets, real processes for other
uids): silent, slow, garbage, flooding or too many; none stalls the server or the others,
and the optional group is admitted by SO_PEERCRED/SO_PEERGROUPS."""

from __future__ import annotations

import asyncio
import grp
import json
import os
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs
from test_control import CLIENT, echo

from bitcoin_supervisor.supervisor._control import ControlServer, request
from bitcoin_supervisor.supervisor.control_protocol import StatusReply, StatusRequest

# The server's per-request deadline. Well-behaved clients must be served in under half of
# it; with 0.5 s a loaded 2-core machine (load ~30) missed that, and the flooding client
# was not dropped within 20 of them.
TIMEOUT = 2.0


@asynccontextmanager
async def serving(path: Path, **options: Any) -> AsyncIterator[ControlServer]:
    server = ControlServer(path, echo, request_timeout=TIMEOUT, **options)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def timed_status(path: Path) -> float:
    """Seconds one well-behaved client waits for its status reply."""
    start = time.monotonic()
    assert isinstance(await request(path, StatusRequest(), timeout=5), StatusReply)
    return time.monotonic() - start


async def read_all(reader: asyncio.StreamReader) -> list[dict[str, Any]]:
    return [json.loads(line) async for line in reader]


def test_a_silent_client_is_cut_off_and_blocks_nobody(tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"

    async def main() -> None:
        async with serving(sock):
            reader, writer = await asyncio.open_unix_connection(str(sock))
            started = time.monotonic()
            assert await timed_status(sock) < TIMEOUT / 2  # served while the silent one waits
            with capture_logs() as logs:
                replies = await read_all(reader)  # the server hangs up on it
            assert time.monotonic() - started >= TIMEOUT
            assert replies == [{"ok": False, "code": 408,
                                "error": f"no complete request within {TIMEOUT:g} s"}]
            assert [e["event"] for e in logs] == ["control.timed_out"]
            writer.close()

    asyncio.run(main())


def _slow_client(path: Path) -> tuple[float, bytes]:
    """Send a request a byte every 50 ms, never its newline; return how long the server
    kept it and what it answered."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        started = time.monotonic()
        try:
            for _ in range(200):
                sock.sendall(b"x")
                time.sleep(0.05)
        except BrokenPipeError:
            pass  # cut off
        return time.monotonic() - started, sock.makefile("rb").readline()


def test_a_slow_client_gets_no_more_time_than_a_silent_one(tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"

    async def main() -> None:
        async with serving(sock):
            kept, answer = await asyncio.to_thread(_slow_client, sock)
            assert json.loads(answer)["code"] == 408
            assert TIMEOUT <= kept < TIMEOUT * 3

    asyncio.run(main())


def test_garbage_gets_errors_and_others_are_served(tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"

    async def main() -> None:
        async with serving(sock):
            reader, writer = await asyncio.open_unix_connection(str(sock))
            garbage = bytes(range(256)) * 64  # newlines included: many malformed lines
            writer.write(garbage + b'\n{"verb": "status"}\n')
            writer.write_eof()
            assert await timed_status(sock) < TIMEOUT / 2
            replies = await read_all(reader)
            assert [r["ok"] for r in replies] == [False] * 65 + [True]
            assert {r["code"] for r in replies[:-1]} == {400}
            # Garbage without a newline, under the size limit: cut off in time.
            reader, writer = await asyncio.open_unix_connection(str(sock))
            writer.write(bytes(range(11, 256)) * 100)
            assert [r["code"] for r in await read_all(reader)] == [408]
            writer.close()

    asyncio.run(main())


def test_a_flood_that_never_reads_does_not_stall_others(tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"

    async def main() -> None:
        async with serving(sock):
            reader, writer = await asyncio.open_unix_connection(str(sock))
            flood = b'{"verb": "status"}\n' * 20_000  # ~380 KB of requests, replies unread
            writer.write(flood)
            drain = asyncio.create_task(writer.drain())
            waits = [await timed_status(sock) for _ in range(5)]
            assert max(waits) < TIMEOUT / 2, waits
            # It does not read its replies: once they back up, the server drops it.
            started = time.monotonic()
            while not reader.at_eof():
                try:
                    await asyncio.wait_for(reader.read(1 << 20), TIMEOUT * 4)
                except (ConnectionResetError, TimeoutError):
                    break
                if time.monotonic() - started > TIMEOUT * 20:
                    raise AssertionError("the flooding client was never dropped")
            drain.cancel()
            writer.close()
            assert await timed_status(sock) < TIMEOUT / 2

    asyncio.run(main())


def test_too_many_connections_of_one_uid_are_refused_busy(tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"

    async def main() -> None:
        async with serving(sock, max_clients_per_uid=4):
            held = [await asyncio.open_unix_connection(str(sock)) for _ in range(4)]
            await asyncio.sleep(0)
            with capture_logs() as logs:
                extra = [await asyncio.open_unix_connection(str(sock)) for _ in range(20)]
                replies = [await read_all(r) for r, _ in extra]
            assert all(r == [{"ok": False, "code": 503, "error": "too many control "
                              f"connections of uid {os.geteuid()} (limit 4); try again"}]
                       for r in replies)
            assert [e["event"] for e in logs] == ["control.busy"]  # once, not 20 times
            for _, writer in held + extra:
                writer.close()
            await asyncio.sleep(0.05)
            assert await timed_status(sock) < TIMEOUT / 2  # the slots come back

    asyncio.run(main())


def _client_as(sock: Path, groups: list[int]) -> dict[str, Any]:
    out = subprocess.run(["/usr/bin/python3", "-c", CLIENT, str(sock)], user=65534,
                         group=65534, extra_groups=groups, capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return dict(json.loads(out))


def test_the_configured_group_is_admitted_others_are_refused() -> None:
    users = grp.getgrnam("users").gr_gid
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        os.chmod(tmp, 0o711)  # the datadir's parent: traversable
        datadir = Path(tmp) / "data"
        datadir.mkdir(mode=0o700)
        sock = datadir / "supervisor.sock"

        async def main() -> None:
            async with serving(sock, group=users):
                for path, mode in ((sock, 0o660), (datadir, 0o710)):
                    st = os.stat(path)
                    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (mode, users), path
                member = await asyncio.to_thread(_client_as, sock, [users])
                assert member["ok"] is True
                # Not a member: the directory already keeps it out, so open the way to
                # make SO_PEERCRED the guard being tested.
                os.chmod(datadir, 0o711)
                os.chmod(sock, 0o666)
                with capture_logs() as logs:
                    stranger = await asyncio.to_thread(_client_as, sock, [])
                assert stranger == {"ok": False, "code": 403, "error": "permission denied: "
                                    f"only the daemon's user, root and group {users} may use "
                                    "this socket"}
                assert [(e["event"], e["uid"]) for e in logs] == [("control.refused", 65534)]

        asyncio.run(main())
