"""Two nodes, each with its own wallet (and one index): every consumer is brokered its
own provider's Chain, sees only that node's blocks, and a node restart re-brokers to its
own consumers only."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bitcoin_supervisor.supervisor import load_config
from bitcoin_supervisor.supervisor._rpcclient import RpcEndpoint, call

from .conftest import System, free_port, launch, stop_system

REGTEST_SUBSIDY = "50.00000000"


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "two-nodes.toml"
    path.write_text(f"""
[supervisor]
datadir = "{tmp_path / 'data'}"
[components.node-a]
role = "node"
rpcport = {free_port()}
[components.node-b]
role = "node"
rpcport = {free_port()}
[components.wallet-a]
role = "wallet"
consumes = ["chain@node-a"]
[components.wallet-b]
role = "wallet"
consumes = ["chain@node-b"]
[components.index-b]
role = "index"
consumes = ["chain@node-b"]
""")
    return path


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[System]:
    system = launch(_config(tmp_path))
    try:
        system.wait_ready()
        yield system
    finally:
        stop_system(system)


def _rpc(system: System, node: str, method: str, *params: Any,
         wallet: str | None = None) -> Any:
    """Call ``node``'s own JSON-RPC endpoint (the CLI's ``rpc`` knows one node only)."""
    comp = load_config(system.config).component(node)
    endpoint = RpcEndpoint(str(comp.options["rpcbind"]), int(str(comp.options["rpcport"])),
                           comp.datadir / ".cookie", node)
    owner = system.component(node)["sandbox"]["uid"]
    return call(endpoint, method, list(params), wallet=wallet,
                cookie_owner=os.geteuid() if owner is None else owner)


def test_each_wallet_follows_its_own_node(two_nodes: System) -> None:
    system = two_nodes
    _rpc(system, "node-a", "createwallet", "alice")
    _rpc(system, "node-b", "createwallet", "bob")
    # Each node serves its own wallet's methods only.
    assert _rpc(system, "node-a", "listwallets") == ["alice"]
    assert _rpc(system, "node-b", "listwallets") == ["bob"]
    alice = _rpc(system, "node-a", "getnewaddress", wallet="alice")
    _rpc(system, "node-a", "generatetoaddress", 101, alice)
    assert _rpc(system, "node-a", "getblockcount") == 101
    assert _rpc(system, "node-b", "getblockcount") == 0
    assert f"{_rpc(system, 'node-a', 'getbalance', wallet='alice'):.8f}" == REGTEST_SUBSIDY
    assert _rpc(system, "node-b", "getbalance", wallet="bob") == 0

    # The index bound to node-b sees node-b's blocks, and nothing of node-a's datadir.
    index = system.component("index-b")
    inner = _inner_pid(index["pid"])
    root = Path(f"/proc/{inner}/root")
    node_a, node_b = (Path(system.component(n)["datadir"]) for n in ("node-a", "node-b"))
    assert (root / node_b.relative_to("/") / "blocks").is_dir()
    assert not (root / node_a.relative_to("/")).exists()


def test_node_restart_rebrokers_to_its_own_consumers_only(two_nodes: System) -> None:
    system = two_nodes
    pids = system.pids()
    system.log.mark()
    system.cli("restart", "node-b")
    for consumer in ("wallet-b", "index-b"):
        system.log.wait_for(lambda e, c=consumer: e.get("event") == "broker.capability_given"
                            and e.get("component") == c and e.get("rebrokered") is True)
    system.log.wait_drain()
    rebrokered = {e["component"] for e in system.log.events
                  if e.get("event") == "broker.capability_given"}
    assert rebrokered == {"wallet-b", "index-b"}
    after = system.pids()
    assert after["node-b"] != pids["node-b"]
    assert {n: after[n] for n in after if n != "node-b"} == {
        n: pids[n] for n in pids if n != "node-b"}
    # wallet-b follows the restarted node-b: blocks mined there reach it.
    _rpc(system, "node-b", "createwallet", "bob")
    bob = _rpc(system, "node-b", "getnewaddress", wallet="bob")
    _rpc(system, "node-b", "generatetoaddress", 101, bob)
    assert f"{_rpc(system, 'node-b', 'getbalance', wallet='bob'):.8f}" == REGTEST_SUBSIDY
    assert _rpc(system, "node-a", "getblockcount") == 0


def _inner_pid(waiter: int) -> int:
    with open(f"/proc/{waiter}/task/{waiter}/children", encoding="ascii") as fh:
        children = fh.read().split()
    assert len(children) == 1, children
    return int(children[0])
