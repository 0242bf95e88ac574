"""--debug ipc logs every IPC request and response as a structured event."""

from __future__ import annotations

from pathlib import Path

from .conftest import start_system, stop_system


def test_debug_ipc_logs_calls_on_both_sides(tmp_path: Path) -> None:
    system = start_system(tmp_path, "--debug", "ipc")
    try:
        system.rpc("createwallet", "dbg")
        # The node's own calls reach the log as data relayed under its name.
        relayed = system.log.wait_for(
            lambda e: e.get("event") == "child.log" and e.get("component") == "node"
            and e.get("child_event") == "ipc.call" and e["child"].get("method") == "execute")
        assert {"interface", "method", "direction", "duration_ms"} <= set(relayed["child"])
        calls = [e for e in system.log.events if e.get("event") == "ipc.call"]
        # The supervisor's own bootstrap calls, client side (the wallet is introduced:
        # the node serves its Chain on a direct link, the wallet connects to it).
        assert any(e["method"] == "serveChain" and e["direction"] == "client" for e in calls)
        assert any(e["method"] == "connectChain" and e["direction"] == "client"
                   for e in calls)
        assert any(e["method"] == "makeWalletLoader" and e["direction"] == "client"
                   for e in calls)
        for event in calls:
            assert {"interface", "method", "direction", "component", "duration_ms"} <= set(event)
    finally:
        stop_system(system)
