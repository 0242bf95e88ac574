"""``echo_direct_vs_brokered``: sequential calls parent->child against the same call made
by a second child on a capability the broker forwarded to it (child->supervisor->node)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from bitcoin_supervisor.interfaces import Chain, ChainGrant
from bitcoin_supervisor.ipc import Connection, make_protocol
from bitcoin_supervisor.supervisor import Binding, Broker, CapabilityGraph

from . import _children as ch
from ._options import Options
from ._report import Cell, Result
from ._stats import ratio, summarize

WARMUP_CALLS = 20
# The probe is bound to the node's chain as an index would be.
_GRAPH = CapabilityGraph(roles={"node": "node", "probe": "index"},
                         provides={"node": ("chain",), "probe": ()},
                         bindings=(Binding("probe", "chain", "node"),))
# ARCHITECTURE.md section 4, measured on this kind of VM.
REFERENCE = {"direct_us": 95.0, "brokered_us": 219.0, "ratio": 2.3}
LABELS = {
    "probe_echo": ("Echo.echo", "supervisor -> python child (direct)"),
    "node_echo": ("Echo.echo", "supervisor -> node (direct)"),
    "direct": ("Chain.get_tip", "supervisor -> node (direct)"),
    "brokered": ("Chain.get_tip", "child -> supervisor -> node (brokered)"),
}


async def _time_calls(call: Callable[[], Awaitable[object]], count: int) -> list[float]:
    """Return µs per call for ``count`` sequential calls after a short warm-up."""
    for _ in range(WARMUP_CALLS):
        await call()
    samples = []
    for _ in range(count):
        started = time.perf_counter_ns()
        await call()
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


async def _brokered(broker: Broker, probe: ch.RunningChild, probe_init: Connection,
                    ) -> list[float]:
    """Give the node's Chain to the probe the way the daemon gives it to an index; the
    probe times its own calls through us and reports them on stdout."""
    await broker.attach("probe", probe_init.init)
    report = await probe.next_json(timeout=120)
    return [float(s) for s in report["samples_us"]]


async def _measure(opts: Options, variant: ch.SpawnVariant, per_round: int, rounds: int
                   ) -> dict[str, list[float]]:
    """All four series for one variant of the node (the probe is never sandboxed)."""
    protocol = make_protocol()
    node = await ch.role_launch("node", opts.workdir / variant.name, variant).start()
    probe = await ch.plain(ch.probe_argv(),
                           ch.child_env(extra={ch.PROBE_CALLS_ENV: str(per_round)})).start()
    links: list[Connection] = []
    try:
        node_link = await ch.connect(protocol, node, "node")
        links.append(node_link)
        probe_link = await ch.connect(protocol, probe, "probe")
        links.append(probe_link)
        broker = Broker(_GRAPH)
        await broker.attach("node", node_link.init)
        chain: Chain = await node_link.init.make_chain(ChainGrant("test"))
        node_echo = await node_link.init.make_echo()
        probe_echo = await probe_link.init.make_echo()
        series: dict[str, list[float]] = {key: [] for key in LABELS}
        for _ in range(rounds):
            series["probe_echo"] += await _time_calls(lambda: probe_echo.echo("ping"),
                                                      per_round)
            series["node_echo"] += await _time_calls(lambda: node_echo.echo("ping"), per_round)
            series["direct"] += await _time_calls(chain.get_tip, per_round)
            series["brokered"] += await _brokered(broker, probe, probe_link)
    finally:
        await probe.stop()
        await node.stop()
        for link in links:
            link.close()
    return series


async def echo_direct_vs_brokered(opts: Options) -> Result:
    """Measure µs per sequential call, per variant of the node: Echo direct (probe, node),
    ``Chain.get_tip`` direct on the node, and ``get_tip`` from the probe via the broker,
    in interleaved rounds. Raises RuntimeError if a child fails."""
    per_round, rounds = opts.pick(150, 1500), 2
    rows: list[dict[str, Cell]] = []
    measured: dict[str, float] = {}
    # Calls do not depend on how the node was started, only on whether it is confined.
    for variant in ch.DAEMON_VARIANTS:
        series = await _measure(opts, variant, per_round, rounds)
        direct = summarize(series["direct"])
        for key, (label, path) in LABELS.items():
            stats = summarize(series[key])
            rows.append({"label": label, "path": path, "node": variant.name,
                         **stats.to_row(), "ratio_vs_direct": ratio(stats.median, direct.median)})
        measured[variant.name] = ratio(summarize(series["brokered"]).median, direct.median)
    ratios = ", ".join(f"{name} {value:.2f}x" for name, value in measured.items())
    return Result(
        name="echo_direct_vs_brokered",
        title="sequential round trips, direct vs brokered through the supervisor",
        unit="µs", baseline="Chain.get_tip supervisor -> node (direct), same node variant",
        columns=("label", "path", "node", "n", "median", "p90", "min", "ratio_vs_direct"),
        rows=rows,
        notes=[f"brokered/direct: {ratios}; ARCHITECTURE.md section 4 quotes "
               f"{REFERENCE['direct_us']:.0f} µs direct vs {REFERENCE['brokered_us']:.0f} µs "
               f"brokered ({REFERENCE['ratio']}x)",
               "brokered: the probe (never sandboxed) received the node's Chain through "
               "Broker.attach, as an index does, and times its own calls"],
        params={"calls_per_round": per_round, "rounds": rounds, "warmup_calls": WARMUP_CALLS,
                "reference": REFERENCE, "brokered_over_direct": measured})
