"""``chain_introduced``: ``Chain.get_tip`` forwarded through the supervisor, introduced
(a direct link the broker set up), and direct (the bench's own link to the node), in one
run; calls/s with 1000 calls in flight; introduction latency (decision -> first call
answered)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bitcoin_supervisor.interfaces import Chain, ChainGrant, ChainLimits
from bitcoin_supervisor.ipc import Connection, make_protocol
from bitcoin_supervisor.supervisor import Binding, Broker, CapabilityGraph

from . import _children as ch
from ._options import Options
from ._report import Cell, Result
from ._stats import median, ratio, summarize

WARMUP_CALLS = 20
IN_FLIGHT = 1000
GOAL_RATIO = 1.2  # introduced / direct, issue 8
GOAL_RATE = 30_000.0  # calls/s through an introduced link, issue 8
# The probe consumes the node's chain as an index does, allowed 1000 calls in flight.
_LIMITS = ChainLimits(max_calls_in_flight=2 * IN_FLIGHT)
_GRAPH = CapabilityGraph(roles={"node": "node", "probe": "index"},
                         provides={"node": ("chain",), "probe": ()},
                         bindings=(Binding("probe", "chain", "node"),),
                         grants={"probe": ChainGrant("probe", limits=_LIMITS)})
PATHS = {
    "direct": "bench -> node (its own link)",
    "introduced": "probe -> node (introduced socketpair)",
    "forwarded": "probe -> supervisor -> node (forwarded)",
}


async def _direct(chain: Chain, calls: int, batches: int) -> dict[str, Any]:
    for _ in range(WARMUP_CALLS):
        await chain.get_tip()
    samples: list[float] = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        await chain.get_tip()
        samples.append((time.perf_counter_ns() - started) / 1000)
    rates = []
    for _ in range(batches):
        started = time.perf_counter_ns()
        await asyncio.gather(*(chain.get_tip() for _ in range(IN_FLIGHT)))
        rates.append(IN_FLIGHT / ((time.perf_counter_ns() - started) / 1e9))
    return {"samples_us": samples, "calls_per_s": rates}


async def _through_broker(node: ch.RunningChild, node_link: Connection, probe: ch.RunningChild,
                          probe_link: Connection, introduce: bool) -> dict[str, Any]:
    """Hand the node's Chain to the probe through a Broker, introduced or forwarded; the
    probe times its calls and reports; adds ``latency_ms`` (attach -> first answer)."""
    broker = Broker(_GRAPH)
    await broker.attach("node", node_link.init, intro=node.endpoint.intro if introduce else None)
    decided = time.monotonic()
    await broker.attach("probe", probe_link.init,
                        intro=probe.endpoint.intro if introduce else None)
    report = await probe.next_json(timeout=300)
    path = broker.links("probe").get("chain")
    expected = "introduced" if introduce else "forwarded"
    if path != expected:
        raise RuntimeError(f"the probe's chain was {path}, not {expected}")
    broker.detach("probe")  # revokes the introduced link
    report["latency_ms"] = (float(report["first_answered"]) - decided) * 1000
    return report


async def _measure(opts: Options, calls: int, batches: int, rounds: int
                   ) -> dict[str, dict[str, list[float]]]:
    protocol = make_protocol()
    variant = ch.DAEMON_VARIANTS[-1]  # the sandboxed node, as the daemon runs it
    env = {ch.PROBE_CALLS_ENV: str(calls), "BENCH_PROBE_BATCHES": str(batches),
           "BENCH_PROBE_IN_FLIGHT": str(IN_FLIGHT)}
    node = await ch.role_launch("node", opts.workdir / "node", variant, intro=True).start()
    (opts.workdir / "probe").mkdir(parents=True, exist_ok=True)
    probe = await ch.Launch(ch.probe_argv(), ch.child_env(extra=env), trampoline=True,
                            name="probe", datadir=opts.workdir / "probe",
                            intro=True).start()
    links: list[Connection] = []
    series: dict[str, dict[str, list[float]]] = {
        key: {"samples_us": [], "calls_per_s": [], "latency_ms": []} for key in PATHS}
    try:
        node_link = await ch.connect(protocol, node, "node")
        links.append(node_link)
        probe_link = await ch.connect(protocol, probe, "probe")
        links.append(probe_link)
        chain = await node_link.init.make_chain(ChainGrant("bench", limits=_LIMITS))
        for _ in range(rounds):  # interleaved: load on the machine hits every path alike
            runs: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
                "direct": lambda: _direct(chain, calls, batches),
                "introduced": lambda: _through_broker(node, node_link, probe, probe_link, True),
                "forwarded": lambda: _through_broker(node, node_link, probe, probe_link, False),
            }
            for key, run in runs.items():
                report = await run()
                for field in series[key]:
                    if field in report:
                        series[key][field] += [float(v) for v in (
                            report[field] if isinstance(report[field], list)
                            else [report[field]])]
    finally:
        await probe.stop()
        await node.stop()
        for link in links:
            link.close()
    return series


async def chain_introduced(opts: Options) -> Result:
    """Measure sequential µs per ``get_tip`` and pipelined calls/s on each path, and
    the introduction latency. Raises RuntimeError if a child fails."""
    calls, batches, rounds = opts.pick(30, 1000), opts.pick(1, 10), opts.pick(1, 3)
    series = await _measure(opts, calls, batches, rounds)
    direct = summarize(series["direct"]["samples_us"])
    rows: list[dict[str, Cell]] = []
    for key, path in PATHS.items():
        stats = summarize(series[key]["samples_us"])
        rates = series[key]["calls_per_s"]
        latency = series[key]["latency_ms"]
        rows.append({"path": path, **stats.to_row(),
                     "ratio_vs_direct": ratio(stats.median, direct.median),
                     "calls_per_s_1000": round(median(rates)) if rates else None,
                     "intro_ms": round(median(latency), 2) if latency else None})
    introduced = ratio(summarize(series["introduced"]["samples_us"]).median, direct.median)
    forwarded = ratio(summarize(series["forwarded"]["samples_us"]).median, direct.median)
    rate = median(series["introduced"]["calls_per_s"])
    intro_ms = median(series["introduced"]["latency_ms"])
    return Result(
        name="chain_introduced",
        title="Chain.get_tip: forwarded vs introduced vs direct (sandboxed node)",
        unit="µs", baseline="get_tip bench -> node on its own link (direct)",
        columns=("path", "n", "median", "p90", "min", "ratio_vs_direct", "calls_per_s_1000",
                 "intro_ms"),
        rows=rows,
        notes=[f"introduced/direct {introduced:.2f}x (goal <= {GOAL_RATIO}x), forwarded/direct "
               f"{forwarded:.2f}x; introduced pipelined {rate:,.0f} calls/s with {IN_FLIGHT} "
               f"in flight (goal >= {GOAL_RATE:,.0f}); introduction {intro_ms:.1f} ms from "
               "the broker's decision to the first call answered",
               "intro_ms: Broker.attach of the consumer (the decision) to the probe's first "
               "get_tip answered, CLOCK_MONOTONIC in both processes; forwarded rows time "
               "the same hand-over without an introduction"],
        params={"calls": calls, "batches": batches, "rounds": rounds, "in_flight": IN_FLIGHT,
                "introduced_over_direct": introduced, "forwarded_over_direct": forwarded,
                "introduced_calls_per_s": rate, "introduction_ms": intro_ms})
