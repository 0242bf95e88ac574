"""Issue 9: a hung component. A wallet stopped with SIGSTOP (alive, answering nothing) is
found by its health check, logged, killed and restarted with reason "watchdog"; the node
keeps its pid and the new wallet still holds every address it handed out."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from ..integration.conftest import free_port, launch, stop_system
from ._load import WALLET, NodeRpc

INTERVAL_S, TIMEOUT_S = 0.5, 2.0


@pytest.mark.timeout(400)
def test_a_stopped_wallet_is_found_by_its_health_check_and_restarted(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "hang.toml"
    config.write_text(f"""
[supervisor]
datadir = "{tmp_path / 'data'}"
[components.node]
rpcport = {port}
[components.wallet]
health = {{ check = "echo", interval_s = {INTERVAL_S}, timeout_s = {TIMEOUT_S} }}
stop_timeout_s = 2
restart = {{ policy = "on-failure", backoff_initial_s = 0.05 }}
""")
    system = launch(config, rpcport=port)
    try:
        system.wait_ready(timeout=120)
        rpc = NodeRpc(port, system.datadir / "node" / ".cookie")
        rpc.call("createwallet", WALLET)
        addresses = [rpc.call("getnewaddress", wallet=WALLET) for _ in range(3)]
        node_pid = system.component("node")["pid"]
        wallet = system.component("wallet")
        # The role itself, below the sandbox's waiter (the pid the supervisor sees).
        role = psutil.Process(wallet["pid"]).children()[0]
        system.log.mark()
        stopped_at = time.monotonic()
        os.kill(role.pid, signal.SIGSTOP)
        failed = system.log.wait_for(lambda e: e.get("event") == "component.health_failed"
                                     and e.get("component") == "wallet", timeout=60)
        found_s = time.monotonic() - stopped_at
        assert (failed["check"], failed["error"]) == ("echo", f"no answer within {TIMEOUT_S:g} s")
        exited = system.log.wait_for(lambda e: e.get("event") == "component.exited"
                                     and e.get("component") == "wallet", timeout=60)
        assert exited["reason"] == "watchdog", exited
        system.wait_running("wallet", timeout=60)
        restored_s = time.monotonic() - stopped_at
        print(f"hung wallet: found after {found_s:.2f} s, running again after "
              f"{restored_s:.2f} s (interval {INTERVAL_S} s, timeout {TIMEOUT_S} s)")
        # One interval plus one timeout, with room for a loaded machine.
        assert found_s < INTERVAL_S + TIMEOUT_S + 10, found_s
        after = system.component("wallet")
        assert after["pid"] != wallet["pid"]
        assert (after["restarts"], after["last_exit"]["reason"]) == (1, "watchdog"), after
        assert not psutil.pid_exists(role.pid) or psutil.Process(role.pid).status() == "zombie"
        assert system.component("node")["pid"] == node_pid
        assert not [e for e in system.log.events if e.get("event") == "component.exited"
                    and e.get("component") != "wallet"]
        received = {e["address"] for e in rpc.call("listreceivedbyaddress", 0, True,
                                                   wallet=WALLET)}
        assert set(addresses) <= received
        assert rpc.call("getaddressinfo", rpc.call("getnewaddress", wallet=WALLET),
                        wallet=WALLET)["ismine"] is True
        rpc.close()
    finally:
        stop_system(system)
