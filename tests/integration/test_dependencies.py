"""Dependencies and overlapping commands: nothing hangs, nothing is silently dropped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psutil

from .conftest import CLI, System


def _failed(name: str) -> object:
    return lambda e: (e.get("event") == "component.state_changed"
                      and e.get("component") == name and e.get("new") == "failed")


def test_dependent_crashing_while_its_dependency_is_stopped_fails_cleanly(
        system: System) -> None:
    system.rpc("createwallet", "a")
    address = system.rpc("getnewaddress", wallet="a")
    system.rpc("generatetoaddress", "101", address)
    system.cli("stop", "node")
    system.log.mark()
    os.kill(system.component("wallet")["pid"], signal.SIGKILL)
    system.log.wait_for(_failed("wallet"), timeout=30)
    wallet = system.component("wallet")
    assert (wallet["state"], wallet["reason"]) == ("failed", "dependency")
    # Neither stop nor start hangs; start says why it cannot run.
    system.cli("stop", "wallet", timeout=15)
    refused = system.cli("start", "wallet", check=False, timeout=15)
    assert refused.returncode == 1 and "failed (dependency)" in refused.stderr
    system.cli("start", "node")
    system.cli("start", "wallet")
    assert system.rpc("getbalance", wallet="a") == "50.00000000"


def test_start_sent_while_a_stop_runs_is_not_lost(system: System) -> None:
    stop = subprocess.Popen([CLI, "stop", "index", "--config", str(system.config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    system.log.wait_for(lambda e: e.get("event") == "component.state_changed"
                        and e.get("component") == "index" and e.get("new") == "stop-sigterm")
    system.cli("start", "index")
    assert stop.wait(timeout=30) == 0
    assert system.component("index")["state"] == "active"


def test_node_restart_is_not_held_by_a_frozen_consumer(system: System) -> None:
    wallet = psutil.Process(system.component("wallet")["pid"])
    frozen = [wallet, *wallet.children(recursive=True)]
    for proc in frozen:
        proc.suspend()
    try:
        started = time.monotonic()
        system.cli("restart", "node", timeout=20)
        assert time.monotonic() - started < 10
        assert system.component("node")["state"] == "active"
        assert json.loads(system.rpc("getblockcount")) == 0
    finally:
        for proc in frozen:
            proc.resume()


def test_dependents_of_a_stopped_node_are_shown_degraded_with_the_reason(
        system: System) -> None:
    system.rpc("createwallet", "d")
    system.rpc("generatetoaddress", "3", system.rpc("getnewaddress", wallet="d"))
    wallet = system.component("wallet")
    assert wallet["sync"] == {"height": 3, "tip": 3, "synced": True}
    assert system.component("index")["sync"] == {"height": 3, "tip": 3, "synced": True}
    system.cli("stop", "node")
    for name in ("wallet", "index"):
        comp = system.component(name)
        assert (comp["state"], comp["substate"], comp["reason"]) == (
            "active", "degraded", "dependency")
        assert comp["degraded"] == "node stopped (stopped-by-user)"
        assert comp["sync"] is None  # nobody to compare with
    text = system.cli("status").stdout
    assert "degraded, dependency, node stopped (stopped-by-user)" in text
    system.cli("start", "node")
    comp = system.component("wallet")
    assert (comp["substate"], comp["degraded"]) == ("running", None)
