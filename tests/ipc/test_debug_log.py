"""``debug=True`` logs every call on the link as an ``ipc.call`` event (Core's -debug=ipc)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytest
import structlog
from _ipc_roles import NodeInit, WalletInit, run, served

from bitcoin_supervisor.interfaces import ChainGrant, RemoteError


def _calls(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "ipc.call"]


def test_debug_logs_client_and_server_side_of_each_call() -> None:
    async def main() -> None:
        async with served(NodeInit(), name="node", debug=True) as (conn, _):
            echo = await conn.init.make_echo()
            await echo.echo("hi")

    with structlog.testing.capture_logs() as logs:
        run(main)
    calls = _calls(logs)
    echo_calls = [e for e in calls if e["method"] == "echo"]
    assert {e["direction"] for e in echo_calls} == {"client", "server"}
    for event in echo_calls:
        assert event["interface"] == "Echo" and event["component"] == "node"
        assert isinstance(event["duration_ms"], float) and event["duration_ms"] >= 0
        assert "error" not in event
    # The handshake is logged too (construct on Init, then makeEcho).
    assert {(e["interface"], e["method"]) for e in calls} >= {
        ("Init", "construct"), ("Init", "makeEcho"), ("Echo", "echo")}


def test_debug_logs_failed_calls_with_the_error() -> None:
    async def main() -> None:
        async with served(WalletInit(), name="wallet", debug=True) as (conn, _):
            with pytest.raises(RemoteError):
                await conn.init.make_chain(ChainGrant("test"))

    with structlog.testing.capture_logs() as logs:
        run(main)
    failed = [e for e in _calls(logs) if e["method"] == "makeChain"]
    assert {e["direction"] for e in failed} == {"client", "server"}
    assert all("NotProvidedError" in e["error"] for e in failed)


def test_without_debug_no_call_is_logged() -> None:
    async def main() -> None:
        async with served(NodeInit(), name="node") as (conn, _):
            await (await conn.init.make_echo()).echo("quiet")

    with structlog.testing.capture_logs() as logs:
        run(main)
    assert _calls(logs) == []
