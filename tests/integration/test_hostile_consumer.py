"""A compromised consumer attacks the node through the Chain it was handed: code running
as the real, sandboxed index (its own program in the index's place, confined by the
index policy) tries to hijack the wallet's RPC names, floods registrations, and never
returns from blockConnected; a wallet frozen with SIGSTOP stalls notifications. The node
keeps serving the wallet, its own RPC and block production, and its log says which
consumer misbehaved."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import psutil

from ._peers import write_program
from .conftest import (
    System,
    free_port,
    launch,
    own_config,
    start_system,
    stop_system,
)

# The index's place is taken by this program (fd first, then the attack). It serves an
# Init whose make_index attacks the Chain it is given and reports each outcome on stderr
# (relayed by the supervisor as child.log), then behaves enough like an index to run.
_HOSTILE = f"""#!{sys.executable}
import asyncio, signal, socket, sys
from bitcoin_supervisor.interfaces import (ChainNotifications, Index, IndexInfo, Init,
                                           RpcHandler, RpcResponse)
from bitcoin_supervisor.ipc import IntroInbox, make_protocol
from bitcoin_supervisor.roles._intro import IntroducingInit

MODE = sys.argv[2]
kept = []

def report(*words):
    print("hostile:", *words, file=sys.stderr, flush=True)

class Evil(RpcHandler):
    async def execute(self, request):
        return RpcResponse('"bcrt1qattacker"')

class Never(ChainNotifications):
    async def block_connected(self, block):
        report("stalling at", block.height)
        await asyncio.Event().wait()
    async def block_disconnected(self, block):
        await asyncio.Event().wait()

class HostileIndex(Index):
    async def get_info(self):
        return IndexInfo("txindex", False, -1)
    async def get_transaction(self, txid):
        return None

async def attempt(what, call, quiet=False):
    try:
        kept.append(await call)
        report(what, "accepted")
        return "accepted"
    except Exception as exc:
        if not quiet:
            report(what, "refused", type(exc).__name__)
        return type(exc).__name__

class HostileInit(Init):
    async def make_index(self, chain):
        if MODE == "hijack":
            await attempt("getnewaddress", chain.handle_rpc(["getnewaddress"], Evil()))
            await attempt("getblockcount", chain.handle_rpc(["getblockcount"], Evil()))
            await attempt("sendtoaddress", chain.handle_rpc(["sendtoaddress"], Evil()))
            await attempt("negative-height", chain.get_block(-5))
        elif MODE == "flood":
            outcomes = {{}}
            for i in range(2000):
                got = await attempt(f"flood-{{i}}", chain.handle_rpc(["getindexinfo"], Evil()),
                                    quiet=True)
                outcomes[got] = outcomes.get(got, 0) + 1
            report("flood outcomes", sorted(outcomes.items()))
            await attempt("long-name", chain.handle_rpc(["x" * 100000], Evil()))
            await attempt("many-names", chain.handle_rpc(
                [f"n{{i}}" for i in range(100000)], Evil()))
            report("flood done")
        elif MODE == "oversize":
            # One message of ~6 MiB (the index may send 4 MiB): refused by the node's
            # capnp reader before any Python runs, which drops this link alone.
            await attempt("oversize", chain.handle_rpc(["x" * (1 << 20)] * 6, Evil()))
            await attempt("after-oversize", chain.get_tip())
        elif MODE == "stall":
            await attempt("notifications", chain.handle_notifications(Never()))
        return HostileIndex()

protocol = make_protocol()

async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    init = HostileInit()
    inbox = IntroInbox.from_env()
    if inbox is not None:  # takes its Chain on a direct link to the node, as an index does
        inbox.start()
        init = IntroducingInit(init, inbox, protocol, name="index")
    serve = asyncio.ensure_future(protocol.serve(socket.socket(fileno=int(sys.argv[1])),
                                                 init, name="index"))
    await asyncio.wait({{serve, asyncio.ensure_future(stop.wait())}},
                       return_when=asyncio.FIRST_COMPLETED)
    return 0

sys.exit(protocol.run(main))
"""


def _hostile_system(tmp_path: Path, mode: str) -> System:
    program = write_program(tmp_path, "hostile-index", _HOSTILE)
    config = own_config(tmp_path, f"""
[components.node]
rpcport = {free_port()}
[components.wallet]
[components.index]
argv = ["{program}", "{{fd}}", "{mode}"]
""")
    system = launch(config)
    system.log.wait_for(lambda e: e.get("event") == "supervisor.ready")
    return system


def _said(system: System, text: str, timeout: float = 60) -> str:
    """Wait for the hostile index to report ``text``; return its whole line."""
    event = system.log.wait_for(lambda e: e.get("event") == "child.log"
                                and e.get("component") == "index"
                                and text in str(e.get("line", "")), timeout)
    return str(event["line"])


def _links(system: System, name: str) -> list[tuple[str, str, str]]:
    return [(link["capability"], link["provider"], link["path"])
            for link in system.component(name)["links"]]


def _node_events(system: System, name: str) -> list[dict[str, object]]:
    return [e["child"] for e in system.log.events if e.get("event") == "child.log"
            and e.get("component") == "node" and e.get("child_event") == name]


def test_a_compromised_index_cannot_answer_for_the_wallet(tmp_path: Path) -> None:
    system = _hostile_system(tmp_path, "hijack")
    try:
        # Owned by the wallet, whether or not the wallet's Chain was minted yet.
        assert _said(system, "getnewaddress").endswith("refused RpcNameOwnedError")
        assert _said(system, "getblockcount").endswith("refused RpcNameOwnedError")
        assert _said(system, "sendtoaddress").endswith("refused RpcNameNotAllowedError")
        assert _said(system, "negative-height").endswith("refused InvalidArgumentError")
        system.rpc("createwallet", "alice")
        address = system.rpc("getnewaddress", wallet="alice")
        assert address.startswith("bcrt1") and "attacker" not in address
        info = json.loads(system.rpc("getaddressinfo", address, wallet="alice"))
        assert info["ismine"] is True
        system.log.wait_for(lambda e: len(_node_events(system, "rpc_name.refused")) >= 3)
        refused = {(e["consumer"], e["method"], e["reason"])
                   for e in _node_events(system, "rpc_name.refused")}
        assert {("index", "getnewaddress", "owned"), ("index", "getblockcount", "owned"),
                ("index", "sendtoaddress", "not granted")} <= refused
        assert _links(system, "index") == [("chain", "node", "introduced")]
        assert int(system.rpc("getblockcount")) == 0
        # The index comes back (restarted): the wallet's names stay the wallet's.
        system.log.mark()
        system.cli("restart", "index")
        assert _said(system, "getnewaddress").endswith("refused RpcNameOwnedError")
        assert system.rpc("getnewaddress", wallet="alice").startswith("bcrt1")
    finally:
        stop_system(system)


def test_a_registration_flood_is_refused_before_the_node_grows(tmp_path: Path) -> None:
    system = _hostile_system(tmp_path, "flood")
    try:
        node = psutil.Process(system.pids()["node"])
        inner = (node.children(recursive=True) or [node])[-1]
        _said(system, "flood-0")
        before = inner.memory_info().rss
        outcomes = _said(system, "flood outcomes", timeout=120)
        assert "[('LimitExceededError', 1992), ('accepted', 8)]" in outcomes, outcomes
        _said(system, "flood done", timeout=120)
        grown = inner.memory_info().rss - before
        lines = [str(e.get("line")) for e in system.log.events
                 if e.get("event") == "child.log" and e.get("component") == "index"]
        accepted = [x for x in lines if x.startswith("hostile: flood-") and "accepted" in x]
        assert len(accepted) == 8  # max_registrations by default
        assert any("long-name refused InvalidArgumentError" in x for x in lines)
        assert any("many-names refused LimitExceededError" in x for x in lines)
        assert grown < 30 << 20, f"node grew {grown >> 20} MiB"
        assert int(system.rpc("getblockcount")) == 0  # the node still serves its own RPC
        print(f"flood: 2000 registrations, node RSS grew {grown >> 10} KiB")
    finally:
        stop_system(system)


def test_an_oversized_message_drops_only_its_senders_link(tmp_path: Path) -> None:
    system = _hostile_system(tmp_path, "oversize")
    try:
        assert _said(system, "oversize").endswith("refused PeerGoneError")
        assert _said(system, "after-oversize").endswith("refused PeerGoneError")
        system.log.wait_for(lambda e: any(c.get("peer") == "index" for c in _node_events(
            system, "ipc.direct_disconnected")))
        # The node is up and serves the wallet and its own RPC.
        system.rpc("createwallet", "alice")
        address = system.rpc("getnewaddress", wallet="alice")
        assert len(json.loads(system.rpc("generatetoaddress", "2", address))) == 2
        info = json.loads(system.rpc("getwalletinfo", wallet="alice"))
        assert info["lastprocessedblock"]["height"] == 2
        assert system.component("node")["restarts"] == 0
    finally:
        stop_system(system)


def _generate(system: System, n: int) -> float:
    address = system.rpc("getnewaddress", wallet="miner")
    started = time.monotonic()
    hashes = json.loads(system.rpc("generatetoaddress", str(n), address))
    assert len(hashes) == n
    return time.monotonic() - started


def test_an_index_that_never_returns_does_not_stop_mining(tmp_path: Path) -> None:
    system = _hostile_system(tmp_path, "stall")
    try:
        _said(system, "notifications accepted")
        system.rpc("createwallet", "miner")
        first = _generate(system, 3)
        _said(system, "stalling at 1")
        then = _generate(system, 20)
        # One deadline (5 s by default) at most, then the laggard is not waited for.
        assert first < 8 and then < 3, (first, then)
        lagging = system.log.wait_for(lambda e: bool(_node_events(system,
                                                                  "notifications.lagging")))
        assert lagging["child"]["consumer"] == "index"
        # The healthy wallet was kept in step: its view is the node's tip.
        info = json.loads(system.rpc("getwalletinfo", wallet="miner"))
        assert info["lastprocessedblock"]["height"] == 23
        print(f"stalled index: generatetoaddress 3 took {first:.2f} s, then 20 took {then:.2f} s")
    finally:
        stop_system(system)


def _signal_tree(pid: int, sig: signal.Signals) -> None:
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        proc.send_signal(sig)


def test_a_frozen_wallet_does_not_stop_generatetoaddress(tmp_path: Path) -> None:
    system = start_system(tmp_path)
    try:
        system.rpc("createwallet", "miner")
        address = system.rpc("getnewaddress", wallet="miner")
        wallet = system.pids()["wallet"]
        _signal_tree(wallet, signal.SIGSTOP)
        try:
            started = time.monotonic()
            hashes = json.loads(system.rpc("generatetoaddress", "5", address))
            first = time.monotonic() - started
            started = time.monotonic()
            json.loads(system.rpc("generatetoaddress", "5", address))
            then = time.monotonic() - started
        finally:
            _signal_tree(wallet, signal.SIGCONT)
        assert len(hashes) == 5 and first < 8 and then < 3, (first, then)
        system.log.wait_for(lambda e: any(c["consumer"] == "wallet" for c in _node_events(
            system, "notifications.lagging")))
        # Thawed, it catches up on what it missed (and the node notices).
        system.log.wait_for(lambda e: any(c["consumer"] == "wallet" for c in _node_events(
            system, "notifications.caught_up")))
        info = json.loads(system.rpc("getwalletinfo", wallet="miner"))
        assert info["lastprocessedblock"]["height"] == 10
        print(f"frozen wallet: generatetoaddress 5 took {first:.2f} s, then {then:.2f} s")
    finally:
        stop_system(system)
