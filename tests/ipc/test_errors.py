"""Remote failures arrive as one clean line; a broken link arrives as PeerGoneError."""

from __future__ import annotations

import asyncio
import socket

import pytest
import structlog
from _ipc_roles import PROTOCOL, NodeInit, WalletInit, run, served

from bitcoin_supervisor.interfaces import ChainGrant, PeerGoneError, RemoteError


def _assert_clean(message: str) -> None:
    assert "\n" not in message
    assert "Traceback" not in message and "File " not in message
    assert ".py" not in message and "stack:" not in message


def test_missing_capability_is_a_one_line_remote_error() -> None:
    async def main() -> str:
        async with served(WalletInit(), name="wallet") as (conn, _):
            with pytest.raises(RemoteError) as caught:
                await conn.init.make_chain(ChainGrant("test"))
            # The link survives a remote failure.
            with pytest.raises(RemoteError):
                await conn.init.make_echo()
            return str(caught.value)

    with structlog.testing.capture_logs() as logs:
        message = run(main)
    assert message == "NotProvidedError: this component does not provide Chain"
    _assert_clean(message)
    failures = [e for e in logs if e["event"] == "ipc.call_failed"]
    assert failures[0]["method"] == "makeChain" and failures[0]["component"] == "wallet"


def test_unexpected_exception_reaches_peer_without_traceback_but_is_logged_fully() -> None:
    async def main() -> str:
        async with served(NodeInit()) as (conn, _):
            echo = await conn.init.make_echo()
            with pytest.raises(RemoteError) as caught:
                await echo.echo("boom")
            assert await echo.echo("still alive") == "still alive"
            return str(caught.value)

    with structlog.testing.capture_logs() as logs:
        message = run(main)
    # The peer learns the kind of failure; the path stays in our own log only.
    assert message == "ValueError: cannot echo 'boom' at /secret/path/wallet.dat"
    assert "File " not in message and "Traceback" not in message
    failure = next(e for e in logs if e["event"] == "ipc.call_failed")
    assert failure["log_level"] == "error"
    assert isinstance(failure["exc_info"], ValueError)


def test_peer_closing_fails_pending_and_next_calls_and_ends_wait_disconnected() -> None:
    node = NodeInit()

    async def main() -> None:
        server_end, client_end = socket.socketpair()
        serving = asyncio.create_task(PROTOCOL.serve(server_end, node, name="node"))
        conn = await PROTOCOL.connect(client_end, peer="node")
        echo = await conn.init.make_echo()
        pending = asyncio.create_task(echo.echo("block"))
        await node.echo.parked.wait()
        serving.cancel()  # the serving side drops its end of the link
        with pytest.raises(asyncio.CancelledError):
            await serving
        with pytest.raises(PeerGoneError):
            await pending
        with pytest.raises(PeerGoneError):
            await echo.echo("next")
        with pytest.raises(PeerGoneError):
            await conn.init.make_chain(ChainGrant("test"))
        await asyncio.wait_for(conn.wait_disconnected(), 1)
        conn.close()
        conn.close()

    run(main)


def test_close_from_our_side_fails_pending_calls_and_ends_serve() -> None:
    node = NodeInit()

    async def main() -> None:
        server_end, client_end = socket.socketpair()
        serving = asyncio.create_task(PROTOCOL.serve(server_end, node, name="node"))
        conn = await PROTOCOL.connect(client_end, peer="node")
        echo = await conn.init.make_echo()
        pending = asyncio.create_task(echo.echo("block"))
        await node.echo.parked.wait()
        conn.close()
        with pytest.raises(PeerGoneError):
            await pending
        await asyncio.wait_for(conn.wait_disconnected(), 1)
        await asyncio.wait_for(serving, 1)  # serve() returns once the peer is gone

    run(main)


def test_connect_to_a_closed_peer_raises_peer_gone() -> None:
    async def main() -> None:
        server_end, client_end = socket.socketpair()
        server_end.close()
        with pytest.raises(PeerGoneError):
            await PROTOCOL.connect(client_end, peer="ghost")

    run(main)


def test_wait_disconnected_can_be_cancelled_without_breaking_the_link() -> None:
    async def main() -> None:
        async with served(NodeInit()) as (conn, _):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(conn.wait_disconnected(), 0.01)
            echo = await conn.init.make_echo()
            assert await echo.echo("ok") == "ok"

    run(main)

