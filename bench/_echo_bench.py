"""``echo_direct_vs_brokered``: calls parent->child against the same call made by a second
child on a capability the broker forwarded to it (child->supervisor->node), sequential and
pipelined, over the floor of a raw socketpair ping-pong with a Python peer (same run)."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Awaitable, Callable

from bitcoin_supervisor.interfaces import Chain, ChainGrant
from bitcoin_supervisor.ipc import Connection, make_protocol
from bitcoin_supervisor.supervisor import Binding, Broker, CapabilityGraph

from . import _children as ch
from ._options import Options
from ._probe import PIPELINE_DEPTH
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
    "floor": ("raw socketpair ping-pong", "blocking send/recv <-> python child"),
    "floor_pipelined": ("raw socketpair ping-pong, pipelined",
                        "blocking send/recv <-> python child"),
    "floor_loop": ("raw socketpair ping-pong", "asyncio loop <-> python child"),
    "probe_echo": ("Echo.echo", "supervisor -> python child (direct)"),
    "node_echo": ("Echo.echo", "supervisor -> node (direct)"),
    "direct": ("Chain.get_tip", "supervisor -> node (direct)"),
    "direct_pipelined": ("Chain.get_tip, pipelined", "supervisor -> node (direct)"),
    "brokered": ("Chain.get_tip", "child -> supervisor -> node (brokered)"),
    "brokered_pipelined": ("Chain.get_tip, pipelined",
                           "child -> supervisor -> node (brokered)"),
}
# The floor's peer: echoes whatever arrives until EOF. No site, no imports but socket:
# what is left is the kernel's socketpair and one interpreter at each end.
_PONG = ("import socket, sys\ns = socket.socket(fileno=int(sys.argv[1]))\n"
         "while data := s.recv(4096):\n    s.sendall(data)\n")


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


async def _time_pipelined(call: Callable[[], Awaitable[object]], count: int) -> list[float]:
    """Return µs per call for ``count`` calls issued PIPELINE_DEPTH at a time."""
    for _ in range(WARMUP_CALLS):
        await call()
    samples = []
    for _ in range(max(1, count // PIPELINE_DEPTH)):
        started = time.perf_counter_ns()
        await asyncio.gather(*(call() for _ in range(PIPELINE_DEPTH)))
        samples.append((time.perf_counter_ns() - started) / 1000 / PIPELINE_DEPTH)
    return samples


async def _floor(count: int) -> dict[str, list[float]]:
    """Round trips of one byte over a socketpair to a minimal Python child: blocking
    sequential, blocking pipelined, and sequential through this event loop."""
    ours, theirs = socket.socketpair()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-S", "-c", _PONG, str(theirs.fileno()), pass_fds=(theirs.fileno(),))
    theirs.close()
    series: dict[str, list[float]] = {"floor": [], "floor_pipelined": [], "floor_loop": []}
    try:
        # Blocking calls on the loop's thread on purpose: nothing else must run meanwhile.
        for index in range(WARMUP_CALLS + count):
            started = time.perf_counter_ns()
            ours.sendall(b"p")
            ours.recv(64)
            if index >= WARMUP_CALLS:
                series["floor"].append((time.perf_counter_ns() - started) / 1000)
        for _ in range(max(1, count // PIPELINE_DEPTH)):
            started = time.perf_counter_ns()
            for _ in range(PIPELINE_DEPTH):
                ours.sendall(b"p")
            received = 0
            while received < PIPELINE_DEPTH:
                received += len(ours.recv(PIPELINE_DEPTH))
            series["floor_pipelined"].append(
                (time.perf_counter_ns() - started) / 1000 / PIPELINE_DEPTH)
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        for index in range(WARMUP_CALLS + count):
            started = time.perf_counter_ns()
            await loop.sock_sendall(ours, b"p")
            await loop.sock_recv(ours, 64)
            if index >= WARMUP_CALLS:
                series["floor_loop"].append((time.perf_counter_ns() - started) / 1000)
    finally:
        ours.close()
        await process.wait()
    return series


async def _brokered(broker: Broker, probe: ch.RunningChild, probe_init: Connection,
                    ) -> tuple[list[float], list[float]]:
    """Give the node's Chain to the probe the way the daemon gives it to an index; the
    probe times its own calls through us (sequential, then pipelined) and reports them
    on stdout."""
    await broker.attach("probe", probe_init.init)
    report = await probe.next_json(timeout=120)
    return ([float(s) for s in report["samples_us"]],
            [float(s) for s in report["pipelined_us"]])


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
            for key, samples in (await _floor(per_round)).items():
                series[key] += samples
            series["probe_echo"] += await _time_calls(lambda: probe_echo.echo("ping"),
                                                      per_round)
            series["node_echo"] += await _time_calls(lambda: node_echo.echo("ping"), per_round)
            series["direct"] += await _time_calls(chain.get_tip, per_round)
            series["direct_pipelined"] += await _time_pipelined(chain.get_tip, per_round)
            sequential, pipelined = await _brokered(broker, probe, probe_link)
            series["brokered"] += sequential
            series["brokered_pipelined"] += pipelined
    finally:
        await probe.stop()
        await node.stop()
        for link in links:
            link.close()
    return series


async def echo_direct_vs_brokered(opts: Options) -> Result:
    """Measure µs per call, per variant of the node: a raw socketpair ping-pong (the floor),
    Echo direct (probe, node), ``Chain.get_tip`` direct on the node and from the probe via
    the broker, each sequential and pipelined, in interleaved rounds. Raises RuntimeError
    if a child fails."""
    per_round, rounds = opts.pick(150, 1500), 2
    rows: list[dict[str, Cell]] = []
    measured: dict[str, float] = {}
    # Calls do not depend on how the node was started, only on whether it is confined.
    for variant in ch.DAEMON_VARIANTS:
        series = await _measure(opts, variant, per_round, rounds)
        direct = summarize(series["direct"])
        floor = summarize(series["floor"])
        for key, (label, path) in LABELS.items():
            stats = summarize(series[key])
            rows.append({"label": label, "path": path, "node": variant.name,
                         **stats.to_row(), "ratio_vs_direct": ratio(stats.median, direct.median),
                         "ratio_vs_floor": ratio(stats.median, floor.median)})
        measured[variant.name] = ratio(summarize(series["brokered"]).median, direct.median)
    ratios = ", ".join(f"{name} {value:.2f}x" for name, value in measured.items())
    return Result(
        name="echo_direct_vs_brokered",
        title="IPC round trips: direct vs brokered through the supervisor, over a raw "
              "socketpair floor",
        unit="µs", baseline="Chain.get_tip supervisor -> node (direct), same node variant; "
                            "raw socketpair ping-pong (blocking), same round",
        columns=("label", "path", "node", "n", "median", "p90", "min", "ratio_vs_direct",
                 "ratio_vs_floor"),
        rows=rows,
        notes=[f"brokered/direct: {ratios}; ARCHITECTURE.md section 4 quotes "
               f"{REFERENCE['direct_us']:.0f} µs direct vs {REFERENCE['brokered_us']:.0f} µs "
               f"brokered ({REFERENCE['ratio']}x)",
               "brokered: the probe (never sandboxed) received the node's Chain through "
               "Broker.attach, as an index does, and times its own calls",
               f"pipelined: {PIPELINE_DEPTH} calls in flight, µs per call = batch time / "
               f"{PIPELINE_DEPTH}; the floor's peer is `python -S` echoing one byte"],
        params={"calls_per_round": per_round, "rounds": rounds, "warmup_calls": WARMUP_CALLS,
                "pipeline_depth": PIPELINE_DEPTH,
                "reference": REFERENCE, "brokered_over_direct": measured})
