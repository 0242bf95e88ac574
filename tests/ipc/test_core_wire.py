"""Bitcoin Core v30's wire ids: our client bootstraps a peer that serves Core's Init the
way libmultiprocess's C++ servers do (thread required, destroy once) and health-checks it
through Core's Echo."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import capnp
import pytest
from _core_peer import CORE_PEER

from bitcoin_supervisor.interfaces import ChainGrant, RemoteError
from bitcoin_supervisor.ipc import make_protocol
from bitcoin_supervisor.ipc.capnp import load_schemas


@pytest.fixture
def core_socket(tmp_path: Path) -> Iterator[Path]:
    """A Core-like peer listening on a socket, as bitcoin-node -ipcbind=unix does."""
    program = tmp_path / "core-peer"
    program.write_text(CORE_PEER)
    program.chmod(0o755)
    path = tmp_path / "regtest" / "node.sock"
    peer = subprocess.Popen([str(program), str(path)], stderr=subprocess.PIPE, text=True)
    try:
        assert peer.stderr is not None
        # Its first line says it listens (or, if it died first, why not).
        first = peer.stderr.readline()
        assert first == "listening\n", first + peer.stderr.read()
        yield path
    finally:
        peer.terminate()
        peer.wait()


def _dial(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(path))
    return sock


def test_our_client_speaks_cores_init_and_echo(core_socket: Path) -> None:
    protocol = make_protocol()

    async def main() -> None:
        connection = await protocol.connect(_dial(core_socket), peer="core",
                                            schema="bitcoin-core")
        try:
            echo = await connection.init.make_echo()
            assert await echo.echo("hello") == "hello"
            await connection.probe("echo")
            await connection.probe("construct")
        finally:
            connection.close()
    protocol.run(main)


def test_the_peer_enforces_libmultiprocess_rules(core_socket: Path) -> None:
    """What a client that ignores the rules meets: no Context.thread fails the call,
    a second destroy is an error. (Our client never does either.)"""
    S = load_schemas()

    async def main() -> None:
        stream = await capnp.AsyncIoStream.create_connection(sock=_dial(core_socket))
        client = capnp.TwoPartyClient(stream)
        init = client.bootstrap().cast_as(S.core.CoreInit)
        thread_map = (await init.construct_request().send()).threadMap
        thread = (await thread_map.makeThread("t")).result
        with pytest.raises(capnp.KjException, match="invalid thread handle"):
            await init.makeEcho()  # Context.thread left null
        request = init.makeEcho_request()
        request.context.thread = thread
        echo = (await request.send()).result
        for attempt in range(2):
            destroy = echo.destroy_request()
            destroy.context.thread = thread
            if attempt == 0:
                await destroy.send()
            else:
                with pytest.raises(capnp.KjException, match="destroy called twice"):
                    await destroy.send()
        stream.close()
    asyncio.run(capnp.run(main()))


def test_our_init_reaches_cores_methods_and_only_its_own_are_refused(
        core_socket: Path) -> None:
    """Our Init extends Core's: with our own schema the handshake and Echo go to Core's
    ids and work against a Core peer; a method of our extension (makeChain) is refused
    with a failure that names the interface, not a hang."""
    protocol = make_protocol()

    async def main() -> str:
        connection = await protocol.connect(_dial(core_socket), peer="core")
        try:
            echo = await connection.init.make_echo()
            assert await echo.echo("inherited") == "inherited"
            try:
                await connection.init.make_chain(ChainGrant("wallet"))
            except RemoteError as exc:
                return str(exc)
            return ""
        finally:
            connection.close()
    assert "not implemented" in protocol.run(main).lower()
