"""Direct introduction between real, sandboxed processes: the wallet and the index call the
node over socketpairs of their own, so a frozen supervisor no longer stands between
them; the supervisor re-introduces after either side restarts, revokes a stopped
consumer's link at the node, and forwards for a consumer configured without an
introduction channel."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil

from bitcoin_supervisor.supervisor import load_config
from bitcoin_supervisor.supervisor._rpcclient import RpcEndpoint, call

from .conftest import System, free_port, launch, own_config, start_system, stop_system


def _links(system: System, name: str) -> dict[str, str]:
    return {link["capability"]: link["path"] for link in system.component(name)["links"]}


def _node_said(system: System, event: str, **keys: Any) -> dict[str, Any]:
    def match(e: dict[str, Any]) -> bool:
        child = e.get("child") or {}
        return (e.get("event") == "child.log" and e.get("component") == "node"
                and e.get("child_event") == event
                and all(child.get(k) == v for k, v in keys.items()))
    return system.log.wait_for(match)


def _direct_rpc(system: System, method: str, *params: Any, wallet: str | None = None) -> Any:
    """JSON-RPC to the node without asking the daemon anything (it may be frozen)."""
    endpoint = RpcEndpoint.from_config(load_config(system.config))
    return call(endpoint, method, list(params), cookie_owner=os.stat(endpoint.cookie_path).st_uid,
                wallet=wallet, timeout=30)


def test_consumers_are_introduced_and_work_without_the_supervisor(tmp_path: Path) -> None:
    system = start_system(tmp_path)
    try:
        assert _links(system, "wallet") == {"chain": "introduced"}
        assert _links(system, "index") == {"chain": "introduced"}
        assert "Uses: chain from node (introduced)" in system.cli("status").stdout
        for name in ("wallet", "index"):
            _node_said(system, "ipc.direct_serving", peer=name)
        system.rpc("createwallet", "alice")
        address = system.rpc("getnewaddress", wallet="alice")
        # Freeze the supervisor: the node's RPC still reaches the wallet (its handler came
        # over the direct link), and blocks still reach both consumers.
        os.kill(system.process.pid, signal.SIGSTOP)
        try:
            hashes = _direct_rpc(system, "generatetoaddress", 101, address)
            assert len(hashes) == 101
            assert _direct_rpc(system, "getbalance", wallet="alice") == 50.0
            info = _direct_rpc(system, "getwalletinfo", wallet="alice")
            assert info["lastprocessedblock"]["height"] == 101
        finally:
            os.kill(system.process.pid, signal.SIGCONT)
        # The node restarts: both consumers are introduced to the new one, not restarted.
        pids = system.pids()
        system.log.mark()
        system.cli("restart", "node")
        for name in ("wallet", "index"):
            system.log.wait_for(lambda e, n=name: e.get("event") == "broker.introduced"
                                and e.get("component") == n and e.get("rebrokered") is None)
        assert system.pids()["wallet"] == pids["wallet"]
        system.log.wait_for(lambda e: e.get("event") == "broker.capability_given"
                            and e.get("component") == "wallet" and e.get("rebrokered"))
        assert system.rpc("getnewaddress", wallet="alice").startswith("bcrt1")
        # The wallet restarts: introduced again; stopping it revokes its link at the node.
        system.cli("restart", "wallet")
        system.wait_running("wallet", not_pid=pids["wallet"])
        assert _links(system, "wallet") == {"chain": "introduced"}
        assert float(system.rpc("getbalance", wallet="alice")) == 50.0
        system.cli("stop", "wallet")
        _node_said(system, "ipc.direct_revoked", peer="wallet")
        assert system.component("wallet")["links"] == []
    finally:
        stop_system(system)


def test_a_consumer_without_introduction_is_forwarded(tmp_path: Path) -> None:
    config = own_config(tmp_path, f"""
[components.node]
rpcport = {free_port()}
[components.wallet]
introduce = false
[components.index]
""")
    system = launch(config)
    try:
        system.wait_ready()
        assert _links(system, "wallet") == {"chain": "forwarded"}
        assert _links(system, "index") == {"chain": "introduced"}
        assert "Uses: chain from node (forwarded)" in system.cli("status").stdout
        system.rpc("createwallet", "bob")
        address = system.rpc("getnewaddress", wallet="bob")
        started = time.monotonic()
        json.loads(system.rpc("generatetoaddress", "3", address))
        assert time.monotonic() - started < 30
        info = json.loads(system.rpc("getwalletinfo", wallet="bob"))
        assert info["lastprocessedblock"]["height"] == 3
    finally:
        stop_system(system)


def _signal_tree(pid: int, sig: signal.Signals) -> None:
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        proc.send_signal(sig)


def test_a_lagging_wallet_shows_in_status_and_is_restarted_past_its_deadline(
        tmp_path: Path) -> None:
    config = own_config(tmp_path, f"""
[components.node]
rpcport = {free_port()}
[components.wallet]
stop_timeout_s = 1
[components.wallet.limits]
notify_deadline_ms = 500
lagging_restart_ms = 4000
""")
    system = launch(config)
    try:
        system.wait_ready()
        system.rpc("createwallet", "miner")
        address = system.rpc("getnewaddress", wallet="miner")
        wallet = system.pids()["wallet"]
        system.log.mark()
        _signal_tree(wallet, signal.SIGSTOP)
        json.loads(system.rpc("generatetoaddress", "2", address))
        system.log.wait_for(lambda e: e.get("event") == "child.log"
                            and e.get("child_event") == "notifications.lagging")
        link = system.component("wallet")["links"][0]
        assert (link["path"], link["lagging"]) == ("introduced", True)
        assert "Uses: chain from node (introduced, LAGGING)" in system.cli("status").stdout
        restarted = system.log.wait_for(
            lambda e: e.get("event") == "consumer.lagging_restarted", timeout=60)
        assert restarted["component"] == "wallet" and restarted["lagging_s"] >= 4.0
        system.wait_running("wallet", not_pid=wallet)
        assert system.component("wallet")["links"][0]["lagging"] is False
        info = json.loads(system.rpc("getwalletinfo", wallet="miner"))
        assert info["lastprocessedblock"]["height"] == 2
    finally:
        stop_system(system)
