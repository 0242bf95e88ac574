"""The main job end to end: three real processes, brokered Chain, regtest, CLI control."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil

from .conftest import GENESIS, System, start_system, stop_system


def _setup_wallet(system: System) -> tuple[str, str]:
    system.rpc("createwallet", "alice")
    address = system.rpc("getnewaddress", wallet="alice")
    assert address.startswith("bcrt1")
    hashes = json.loads(system.rpc("generatetoaddress", "101", address))
    assert len(hashes) == 101
    return address, hashes[0]


def _coinbase_txid(system: System, block_hash: str) -> str:
    block = json.loads(system.rpc("getblock", block_hash, "1"))
    return str(block["tx"][0])


def test_status_rpc_balance_and_index(system: System) -> None:
    status = system.status()
    assert status["supervisor"]["pid"] == system.process.pid
    assert {c["name"]: c["state"] for c in status["components"]} == {
        "node": "active", "wallet": "active", "index": "active"}
    for comp in status["components"]:
        # Started by the daemon itself, or forked by a fork server the daemon started.
        parent = psutil.Process(comp["pid"]).ppid()
        assert system.process.pid in (parent, psutil.Process(parent).ppid())
        assert comp["restarts"] == 0 and comp["uptime_s"] >= 0

    assert system.rpc("getblockhash", "0") == GENESIS
    _, first_hash = _setup_wallet(system)
    assert system.rpc("getbalance", wallet="alice") == "50.00000000"
    assert system.rpc("getblockcount") == "101"

    txid = _coinbase_txid(system, first_hash)
    raw = system.rpc("getrawtransaction", txid)
    assert all(c in "0123456789abcdef" for c in raw) and len(raw) > 100
    verbose = json.loads(system.rpc("getrawtransaction", txid, "true"))
    assert verbose["txid"] == txid and verbose["blockhash"] == first_hash
    assert verbose["confirmations"] == 101


def test_restart_wallet_keeps_other_pids_and_balance(system: System) -> None:
    _setup_wallet(system)
    before = system.pids()
    system.cli("restart", "wallet")
    after = system.pids()
    assert after["wallet"] != before["wallet"]
    assert after["node"] == before["node"] and after["index"] == before["index"]
    assert system.rpc("getbalance", wallet="alice") == "50.00000000"


def test_kill_9_each_component_restarts_it(system: System) -> None:
    address, first_hash = _setup_wallet(system)
    txid = _coinbase_txid(system, first_hash)
    for name in ("wallet", "index", "node"):
        old = system.component(name)
        system.log.mark()
        os.kill(old["pid"], signal.SIGKILL)
        system.wait_running(name)
        new = system.component(name)
        assert new["pid"] != old["pid"]
        assert new["restarts"] == old["restarts"] + 1
        assert new["last_exit"]["signal"] == "SIGKILL"
    # After the node restart, wallet and index were re-brokered a fresh Chain: new blocks
    # reach them through notifications.
    system.rpc("generatetoaddress", "1", address)
    assert system.rpc("getbalance", wallet="alice") == "100.00000000"
    assert json.loads(system.rpc("getrawtransaction", txid, "true"))["confirmations"] == 102


def test_shutdown_leaves_no_process(system: System) -> None:
    pids = list(system.pids().values())
    system.cli("shutdown")
    assert system.process.wait(timeout=60) == 0
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_sigkill_of_supervisor_takes_components_down(tmp_path: Path) -> None:
    system = start_system(tmp_path)
    try:
        procs = [psutil.Process(pid) for pid in system.pids().values()]
        system.process.kill()
        system.process.wait()
        gone, alive = psutil.wait_procs(procs, timeout=10)
        assert alive == []
    finally:
        stop_system(system)


def test_cli_errors(system: System, tmp_path: Path) -> None:
    unknown = system.cli("restart", "walet", check=False)
    assert unknown.returncode == 2
    assert "known components: node, wallet, index" in unknown.stderr
    no_daemon = system.cli("status", "--datadir", str(tmp_path / "nowhere"), check=False)
    assert no_daemon.returncode == 3
    assert "no daemon" in no_daemon.stderr.lower() or "not running" in no_daemon.stderr.lower()
    bad_rpc = system.cli("rpc", "getblockhash", "1000", check=False)
    assert bad_rpc.returncode == 8
    assert "Block height out of range" in bad_rpc.stderr


def test_stopped_wallet_and_index_catch_up_on_missed_blocks(system: System) -> None:
    address, first_hash = _setup_wallet(system)
    system.cli("stop", "wallet")
    system.cli("stop", "index")
    hashes = json.loads(system.rpc("generatetoaddress", "2", address))
    system.cli("start", "wallet")
    system.cli("start", "index")
    assert system.rpc("getbalance", wallet="alice") == "150.00000000"
    txid = _coinbase_txid(system, hashes[-1])
    verbose = json.loads(system.rpc("getrawtransaction", txid, "true"))
    assert verbose["blockhash"] == hashes[-1] and verbose["confirmations"] == 1
    info = json.loads(system.rpc("getindexinfo"))
    assert info == {"txindex": {"synced": True, "best_block_height": 103}}
