"""The chaos run: a real daemon under RPC load, components killed with SIGKILL again and
again, then every promise checked (shared by the CI test and ``make chaos``)."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bitcoin_supervisor.supervisor._client import request_sync
from bitcoin_supervisor.supervisor.control_protocol import StatusReply, StatusRequest

from ..integration.conftest import System, free_port, launch, stop_system
from ._load import WALLET, Acknowledged, Load, NodeRpc, RpcFault, Unreachable

COMPONENTS = ("node", "wallet", "index")


def write_config(tmp_path: Path) -> tuple[Path, int]:
    """Node, wallet and index restarting fast and without a start limit: every kill must
    become exactly one restart (for the wallet and the index, mostly a promotion of
    their standby, as in the bundled config)."""
    port = free_port()
    restart = """
[components.{name}.restart]
policy = "on-failure"
backoff_initial_s = 0.02
backoff_max_s = 0.1
start_limit_burst = 100000
"""
    text = f"""
[supervisor]
datadir = "{tmp_path / 'data'}"
standby = true
[components.node]
rpcport = {port}
[components.wallet]
[components.index]
""" + "".join(restart.format(name=name) for name in COMPONENTS)
    config = tmp_path / "chaos.toml"
    config.write_text(text)
    return config, port


@dataclass
class Report:
    """What a chaos run did and saw."""

    kills: Counter[str] = field(default_factory=Counter)
    restarts: dict[str, int] = field(default_factory=dict)
    unasked_exits: list[dict[str, Any]] = field(default_factory=list)
    exits: Counter[str] = field(default_factory=Counter)  # every component.exited seen
    promotions: Counter[str] = field(default_factory=Counter)  # standbys promoted
    recovery_s: dict[str, list[float]] = field(default_factory=dict)
    fds: tuple[int, int] = (0, 0)
    rss_mib: tuple[float, float] = (0.0, 0.0)
    zombies: list[str] = field(default_factory=list)
    seconds: float = 0.0
    load: Any = None

    def summary(self) -> str:
        lines = [f"{sum(self.kills.values())} kills in {self.seconds:.1f} s: "
                 + ", ".join(f"{n} {k}" for n, k in sorted(self.kills.items()))]
        for name, times in sorted(self.recovery_s.items()):
            ordered = sorted(times)
            lines.append(f"  {name}: kill -> running median {ordered[len(ordered) // 2]:.3f} s,"
                         f" max {ordered[-1]:.3f} s")
        acked = self.load
        lines.append("  standbys promoted: " + (", ".join(
            f"{n} {k}" for n, k in sorted(self.promotions.items())) or "none"))
        lines.append(f"  acknowledged: {len(acked.addresses)} addresses, {len(acked.blocks)} "
                     f"blocks, {acked.lookups} index lookups")
        lines.append(f"  supervisor fds {self.fds[0]} -> {self.fds[1]}, "
                     f"RSS {self.rss_mib[0]:.1f} -> {self.rss_mib[1]:.1f} MiB")
        lines.append("  errors seen by clients: " + ", ".join(
            f"{k} x{n}" for k, n in acked.errors.most_common(8)))
        return "\n".join(lines)


def status(system: System) -> dict[str, Any]:
    reply = request_sync(system.datadir / "supervisor.sock", StatusRequest(), timeout=30)
    assert isinstance(reply, StatusReply), reply
    return {c.name: c for c in reply.components}


def _running(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: (e.get("event") == "component.state_changed"
                      and e.get("component") == name and e.get("new") == "running")


def _supervisor_usage(pid: int) -> tuple[int, float]:
    proc = psutil.Process(pid)
    return proc.num_fds(), proc.memory_info().rss / 2**20


def _count_exits(system: System, report: Report) -> None:
    """Count every exit logged since the last mark, before the next mark forgets them (an
    exit between two kills would otherwise go unseen)."""
    system.log.wait_drain()
    report.exits.update(e["component"] for e in system.log.events
                        if e.get("event") == "component.exited")
    report.promotions.update(e["component"] for e in system.log.events
                             if e.get("event") == "component.standby_promoted")


def setup_system(tmp_path: Path) -> tuple[System, int]:
    config, port = write_config(tmp_path)
    system = launch(config, rpcport=port)
    system.log.wait_for(lambda e: e.get("event") == "supervisor.ready", timeout=90)
    return system, port


def chaos_run(system: System, port: int, kills: dict[str, int], *, seed: int = 1,
              progress: Callable[[str], None] | None = None) -> Report:
    """Kill each component ``kills[name]`` times in random order under load; return what
    was measured. The checks are ``check()``'s. ``progress`` receives a line every 50
    kills (a long run that fails half-way still shows how far it got)."""
    rng = random.Random(seed)
    rpc = NodeRpc(port, system.datadir / "node" / ".cookie")
    rpc.call("createwallet", WALLET)
    mining_address = rpc.call("getnewaddress", wallet=WALLET)
    load = Load(port, system.datadir / "node" / ".cookie", mining_address)
    report = Report(load=load.acked)
    plan = [name for name, n in kills.items() for _ in range(n)]
    rng.shuffle(plan)
    load.start()
    started = time.monotonic()
    # Warm up under load before the baseline: the first calls allocate caches.
    assert load.acked.wait_until(
        lambda a: len(a.blocks) >= 5 and len(a.addresses) >= 5, timeout=120), \
        "the load never got going"
    sup = system.process.pid
    fds0, rss0 = _supervisor_usage(sup)
    try:
        for name in plan:
            before = status(system)[name]
            assert before.state == "active" and before.pid is not None, before
            _count_exits(system, report)
            system.log.mark()
            time.sleep(rng.uniform(0.0, 0.25))  # land kills in every phase of the load
            killed_at = time.monotonic()
            os.kill(before.pid, signal.SIGKILL)
            report.kills[name] += 1
            system.log.wait_for(_running(name), timeout=60)
            report.recovery_s.setdefault(name, []).append(time.monotonic() - killed_at)
            exits = [e for e in system.log.events if e.get("event") == "component.exited"
                     and e.get("component") != name]
            report.unasked_exits += exits
            done = sum(report.kills.values())
            if progress is not None and done % 50 == 0:
                progress(f"{done}/{len(plan)} kills, {time.monotonic() - started:.0f} s, "
                         f"{len(load.acked.addresses)} addresses, "
                         f"{len(load.acked.blocks)} blocks acknowledged")
    finally:
        load.stop()
    _count_exits(system, report)
    report.seconds = time.monotonic() - started
    report.restarts = {n: c.restarts for n, c in status(system).items()}
    fds1, rss1 = _supervisor_usage(sup)
    report.fds, report.rss_mib = (fds0, fds1), (rss0, rss1)
    for child in psutil.Process(sup).children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                report.zombies.append(f"{child.pid} {child.name()}")
        except psutil.NoSuchProcess:
            pass
    return report


def _call_retrying(rpc: NodeRpc, method: str, *params: Any, wallet: str | None = None,
                   timeout: float = 60.0) -> Any:
    """Settle-time calls: a component just restarted may still be attaching."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return rpc.call(method, *params, wallet=wallet)
        except (RpcFault, Unreachable):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def check(system: System, port: int, report: Report) -> None:
    """Assert every promise of issue 9 after a chaos run."""
    comps = status(system)
    assert {n: c.state for n, c in comps.items()} == dict.fromkeys(COMPONENTS, "active")
    assert report.restarts == {n: report.kills[n] for n in COMPONENTS}, report.restarts
    assert report.unasked_exits == [], report.unasked_exits
    # Every exit was a kill of ours: in particular the node never died unasked.
    assert report.exits == report.kills, (report.exits, report.kills)
    # With standbys on, a kill of a wallet or an index is answered by a promotion (one
    # whose standby was not ready yet falls back to a start, counted the same).
    assert all(report.promotions[n] > 0 for n in ("wallet", "index")), report.promotions
    assert report.zombies == []
    acked = report.load
    assert acked.violations == []
    assert acked.non_json == [], acked.non_json[:5]
    # Lookups are of acknowledged blocks: while catching up the index says so, it never
    # claims they do not exist.
    assert not [k for k in acked.errors if k.startswith("_index: -5 No such mempool or")]
    check_kept(NodeRpc(port, system.datadir / "node" / ".cookie"), acked)
    assert report.fds[1] <= report.fds[0] + 4, report.fds
    assert report.rss_mib[1] <= report.rss_mib[0] + 16, report.rss_mib


def check_kept(rpc: NodeRpc, acked: Acknowledged) -> None:
    """Assert that everything ``acked`` holds survived: every acknowledged block on the
    chain, every acknowledged address in the wallet (and its own), and the index in
    agreement with the chain once it has caught up."""
    tip = _call_retrying(rpc, "getblockcount")
    chain = set(rpc.batch("getblockhash", [[h] for h in range(tip + 1)]))
    assert set(acked.blocks) <= chain, "an acknowledged block is not on the chain"
    # Every acknowledged address, in batches: one listreceivedbyaddress of a long run's
    # ~36,000 addresses is more than the node relays from a consumer (4 MiB).
    _call_retrying(rpc, "getwalletinfo", wallet=WALLET)
    for at in range(0, len(acked.addresses), 1000):
        chunk = acked.addresses[at:at + 1000]
        infos = rpc.batch("getaddressinfo", [[a] for a in chunk], wallet=WALLET)
        gone = [a for a, info in zip(chunk, infos, strict=True) if not info["ismine"]]
        assert not gone, f"acknowledged addresses no longer the wallet's: {gone[:5]}"
    sample = random.Random(0).sample(acked.addresses, min(50, len(acked.addresses)))
    listed = rpc.batch("listreceivedbyaddress", [[0, True, False, a] for a in sample],
                       wallet=WALLET)
    assert [[e["address"] for e in entries] for entries in listed] == [[a] for a in sample]
    deadline = time.monotonic() + 60
    while True:  # the index catches up by itself after its last restart
        info = _call_retrying(rpc, "getindexinfo")["txindex"]
        if info["synced"] and info["best_block_height"] == tip:
            break
        assert time.monotonic() < deadline, info
        time.sleep(0.05)
    for at in range(0, len(acked.blocks), 500):  # every acknowledged block, in batches
        chunk = acked.blocks[at:at + 500]
        txids = [b["tx"][0] for b in rpc.batch("getblock", [[h, 1] for h in chunk])]
        found = rpc.batch("getrawtransaction", [[t, True] for t in txids])
        assert [f["blockhash"] for f in found] == chunk, "the index disagrees with the chain"


def teardown(system: System) -> None:
    stop_system(system)
