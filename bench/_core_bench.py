"""``echo_real_core``: ``Echo.echo`` to a real Bitcoin Core v30 ``bitcoin-node`` over the
supervisor's link (bind mode, Core's wire ids, confined by policies/bitcoin-node.toml)
against the same call to our own sandboxed node, in interleaved rounds of one run.

The real node comes from ``BITCOIN_NODE`` (a binary built by hand, never shipped); unset,
only our node is measured and the table says so."""

from __future__ import annotations

import os
from pathlib import Path

from bitcoin_supervisor.interfaces import ComponentSettings
from bitcoin_supervisor.ipc import Connection, make_protocol
from bitcoin_supervisor.sandbox import policy_for
from bitcoin_supervisor.supervisor._launcher import ConfinedLauncher, LaunchSpec

from . import _children as ch
from ._echo_bench import _time_calls
from ._options import Options
from ._report import Cell, Result
from ._stats import ratio, summarize

BITCOIN_NODE_ENV = "BITCOIN_NODE"
_SANDBOXED = next(v for v in ch.DAEMON_VARIANTS if v.sandboxed)
# ARCHITECTURE.md section 3 (issue 7): 213 µs real node vs 189 µs our node, same run.
REFERENCE = {"core_us": 213.0, "ours_us": 189.0}


async def _start_core(binary: Path, root: Path) -> ch.RunningChild:
    """The real node as the daemon starts a bind-mode component: its own argv plus
    -ipcbind, confined before its first instruction, the link dialled on node.sock."""
    datadir = root / "core"
    datadir.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings = ComponentSettings(name="core", role=None, datadir=str(datadir), options={},
                                 sandbox="bitcoin-node", datadirs={"core": str(datadir)},
                                 providers={})
    argv = (str(binary), "-regtest", f"-datadir={datadir}", "-ipcbind=unix", "-listen=0",
            "-server=0", "-printtoconsole=0")
    launcher = ConfinedLauncher()
    spec = LaunchSpec(name="core", argv=argv, env=ch.child_env(), datadir=datadir,
                      policy=policy_for(settings), socket=datadir / "regtest" / "node.sock",
                      link_timeout_s=120.0)
    endpoint = await launcher.launch(spec)
    return ch.RunningChild(endpoint, release=lambda: launcher.release(spec, endpoint))


async def echo_real_core(opts: Options) -> Result:
    """Measure µs per sequential ``Connection.probe("echo")`` (a fresh token through the
    peer's Echo: the supervisor's own health check) to our sandboxed node and, with
    BITCOIN_NODE set, to the real one. Raises RuntimeError if a child fails."""
    per_round, rounds = opts.pick(50, 1000), opts.pick(2, 5)
    binary = os.environ.get(BITCOIN_NODE_ENV)
    protocol = make_protocol()
    ours = await ch.role_launch("node", opts.workdir / "ours", _SANDBOXED).start()
    children, links = [ours], []
    try:
        peers: dict[str, Connection] = {"our node (sandboxed)": await ch.connect(
            protocol, ours, "node")}
        links.append(peers["our node (sandboxed)"])
        if binary:
            core = await _start_core(Path(binary), opts.workdir)
            children.append(core)
            peers["bitcoin-node v30 (policy bitcoin-node)"] = await ch.connect(
                protocol, core, "core", timeout=120, schema="bitcoin-core")
            links.append(peers["bitcoin-node v30 (policy bitcoin-node)"])
        series: dict[str, list[float]] = {name: [] for name in peers}
        for _ in range(rounds):  # interleaved: drift on a shared VM hits both alike
            for name, link in peers.items():
                series[name] += await _time_calls(lambda link=link: link.probe("echo"),
                                                  per_round)
    finally:
        for link in links:
            link.close()
        for child in children:
            await child.stop()
    baseline = summarize(series["our node (sandboxed)"]).median
    rows: list[dict[str, Cell]] = []
    for name, samples in series.items():
        stats = summarize(samples)
        rows.append({"label": "Echo.echo", "peer": name, **stats.to_row(),
                     "ratio_vs_ours": ratio(stats.median, baseline)})
    notes = ["each call: Connection.probe('echo'), the supervisor's health check, over "
             "the link the daemon holds (bind mode for the real node: -ipcbind=unix, "
             "Core's Init/Echo wire ids)",
             f"ARCHITECTURE.md quotes {REFERENCE['core_us']:.0f} µs real node vs "
             f"{REFERENCE['ours_us']:.0f} µs ours"]
    if not binary:
        notes.insert(0, f"real bitcoin-node NOT measured: set {BITCOIN_NODE_ENV} to a "
                        "bitcoin-node v30 built with IPC")
    return Result(
        name="echo_real_core", title="Echo.echo, real bitcoin-node vs our node, same run",
        unit="µs", baseline="Echo.echo to our sandboxed node, same run",
        columns=("label", "peer", "n", "median", "p90", "min", "ratio_vs_ours"),
        rows=rows, notes=notes,
        params={"calls_per_round": per_round, "rounds": rounds, "bitcoin_node": binary,
                "reference": REFERENCE})
