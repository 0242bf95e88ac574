"""Benchmarks of the supervisor process itself: ``idle`` (wakeups a second and RSS of an
idle daemon: nothing should poll) and ``scale`` (status latency and RSS with 1, 10 and 50
wallet components)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psutil

from bitcoin_supervisor.supervisor._client import request_sync
from bitcoin_supervisor.supervisor.control_protocol import StatusReply, StatusRequest

from . import _children as ch
from ._cli_bench import _wall_ms
from ._daemon import CLI, RunningDaemon, start_daemon
from ._options import Options
from ._report import Cell, Result
from ._stats import summarize

MIB = 1024 * 1024
RSS_GOAL_MIB = 30.0
# One more wallet component; its RPC names stay with the bundled wallet (one owner each).
_WALLET = """
[components.wallet-{index}]
role = "wallet"
sandbox = "{{sandbox_wallet}}"
rpc_methods = []
"""


def _switches(pid: int) -> int:
    """Context switches (voluntary + involuntary) of every thread of ``pid`` so far: each
    one is the process waking up or being woken."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except FileNotFoundError:
            continue  # a thread that ended meanwhile
        total += sum(int(line.split()[1]) for line in text.splitlines()
                     if "ctxt_switches:" in line)
    return total


def _rss_mib(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / MIB


async def _wakeups(pid: int, windows: int) -> list[float]:
    """Context switches of ``pid`` in each of ``windows`` one-second windows."""
    counts = []
    before = _switches(pid)
    for _ in range(windows):
        # Idleness has no event to await: the measurement is what happens in the window.
        await asyncio.sleep(1.0)
        after = _switches(pid)
        counts.append(float(after - before))
        before = after
    return counts


async def idle(opts: Options) -> Result:
    """Start the bundled (sandboxed) components, let the daemon settle, then count its
    wakeups per second over the window and read its RSS. Raises RuntimeError if the
    daemon fails to start."""
    windows = opts.pick(2, 10)
    variant = next(v for v in ch.DAEMON_VARIANTS if v.sandboxed)
    daemon = await start_daemon(opts.workdir, variant)
    try:
        await asyncio.sleep(1.0)  # the last start-up log lines and executor jobs
        counts = await _wakeups(daemon.pid, windows)
        rss = _rss_mib(daemon.pid)
        threads = psutil.Process(daemon.pid).num_threads()
    finally:
        await daemon.stop()
    stats = summarize(counts)
    return Result(
        name="idle", title="the idle supervisor: wakeups a second and resident memory",
        unit="wakeups/s", baseline="goal: 0 wakeups/s (nothing polls); RSS <= 30 MiB",
        columns=("label", "n", "median", "p90", "min", "rss_mib", "threads"),
        rows=[{"label": "supervisor, 3 sandboxed components, idle", **stats.to_row(),
               "rss_mib": rss, "threads": threads}],
        notes=["wakeups = voluntary + involuntary context switches of every thread "
               "(/proc/PID/task/*/status) in each one-second window",
               f"RSS goal {RSS_GOAL_MIB:g} MiB: " + ("met" if rss <= RSS_GOAL_MIB else
                                                     f"not met ({rss:.1f} MiB)")],
        params={"windows_s": windows, "variant": variant.name})


async def _status_ms(daemon: RunningDaemon, rounds: int) -> list[float]:
    """Round trips of a status request over the control socket (off the loop)."""
    sock = daemon.config.parent / "data" / "supervisor.sock"
    loop = asyncio.get_running_loop()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        reply = await loop.run_in_executor(None, lambda: request_sync(
            sock, StatusRequest(), timeout=60))
        samples.append((time.perf_counter() - started) * 1000)
        if not isinstance(reply, StatusReply):
            raise RuntimeError(f"status answered {reply!r}")
    return samples


async def scale(opts: Options) -> Result:
    """For 1, 10 and 50 wallet components (1 and 3 with --quick) beside the node and the
    index, all sandboxed: status latency over the control socket and through the CLI,
    and the supervisor's RSS. Raises RuntimeError if the daemon fails to start."""
    counts = (1, 3) if opts.quick else (1, 10, 50)
    rounds = opts.pick(3, 20)
    variant = next(v for v in ch.DAEMON_VARIANTS if v.sandboxed)
    rows: list[dict[str, Cell]] = []
    for wallets in counts:
        extra = "".join(_WALLET.format(index=i) for i in range(1, wallets))
        daemon = await start_daemon(opts.workdir / f"{wallets}-wallets", variant,
                                    extra=extra, timeout=60.0 + 10.0 * wallets)
        try:
            socket_ms = await _status_ms(daemon, rounds)
            cli_ms = [await _wall_ms(CLI, "status", "--json", "--config", str(daemon.config))
                      for _ in range(rounds)]
            rss = _rss_mib(daemon.pid)
        finally:
            await daemon.stop()
        for label, samples in (("status over the control socket", socket_ms),
                               ("status --json via the CLI", cli_ms)):
            rows.append({"label": label, "wallets": wallets, "components": wallets + 2,
                         **summarize(samples).to_row(), "supervisor_rss_mib": rss})
    return Result(
        name="scale", title="status latency and supervisor memory with more wallets",
        unit="ms", baseline="the same request with 1 wallet",
        columns=("label", "wallets", "components", "n", "median", "p90", "min",
                 "supervisor_rss_mib"),
        rows=rows,
        notes=["every component sandboxed; the extra wallets register no RPC names",
               "control socket: one StatusRequest round trip from this process (cgroup "
               "reads included); CLI: the whole `status --json` process",
               "supervisor_rss_mib: the daemon's own RSS after the status requests"],
        params={"wallets": list(counts), "rounds": rounds, "variant": variant.name})
