"""The shipped schemas load in a fresh interpreter (a bad schema aborts from C++, so the
check must run in a subprocess), and a peer process that dies is noticed within ms."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

from _ipc_roles import PROTOCOL, run

from bitcoin_supervisor.interfaces import PeerGoneError

LOAD = textwrap.dedent("""
    from bitcoin_supervisor.ipc.capnp import SCHEMA_DIR, load_schemas
    s = load_schemas()
    assert (SCHEMA_DIR / "mp" / "proxy.capnp").is_file()
    assert s.proxy.schema.node.id == 0xcc316e3f71a040fb
    init = s.init.Init.schema
    core = s.core.CoreInit.schema
    # Our Init extends Bitcoin Core's (wire id 0x8838c700ba5cba65): @0 construct,
    # @1 makeEcho, @2 makeMining there, in method-list order == ordinal.
    assert core.node.id == 0x8838c700ba5cba65
    assert [sup.id for sup in init.node.interface.superclasses] == [core.node.id]
    assert [m.name for m in core.node.interface.methods] == [
        "construct", "makeEcho", "makeMining"]
    assert s.echo.Echo.schema.node.id == 0xd36b89640dc94399  # Core's Echo is ours
    assert s.core.Mining.schema.node.id == 0xf9c68436df3af39e
    print("loaded", sorted(init.methods))
""")

CHILD = textwrap.dedent("""
    import socket, sys
    from bitcoin_supervisor.ipc.capnp import make_capnp_protocol
    from bitcoin_supervisor.interfaces import Echo, Init

    class E(Echo):
        async def echo(self, message):
            return message

    class I(Init):
        async def make_echo(self):
            return E()

    protocol = make_capnp_protocol()
    sock = socket.socket(fileno=int(sys.argv[1]))
    protocol.run(lambda: protocol.serve(sock, I(), name="child"))
""")


def test_schemas_load_in_a_fresh_process() -> None:
    result = subprocess.run([sys.executable, "-c", LOAD], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "makeWalletLoader" in result.stdout and "makeIndex" in result.stdout


def test_killed_peer_process_is_noticed_quickly() -> None:
    parent_end, child_end = socket.socketpair()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(child_end.fileno())],
                             pass_fds=(child_end.fileno(),))
    child_end.close()  # else the parent never sees EOF when the child dies

    async def main() -> float:
        conn = await PROTOCOL.connect(parent_end, peer="child")
        echo = await conn.init.make_echo()
        assert await echo.echo("alive") == "alive"
        killed = time.perf_counter()
        os.kill(child.pid, signal.SIGKILL)
        await asyncio.wait_for(conn.wait_disconnected(), 5)
        noticed = time.perf_counter() - killed
        try:
            await echo.echo("dead")
        except PeerGoneError:
            return noticed
        raise AssertionError("a call to a dead peer must raise PeerGoneError")

    try:
        noticed = run(main)
    finally:
        child.kill()
        child.wait()
    assert noticed < 1.0
