"""Benchmark ``cli_status``: wall time of ``bitcoin-supervisor status --json`` against a
running daemon, next to what an interpreter start and the old import path cost."""

from __future__ import annotations

import asyncio
import sys
import time

from . import _children as ch
from ._daemon import CLI, RunningDaemon, start_daemon
from ._options import Options
from ._report import Cell, Result
from ._stats import ratio, summarize

# Before the typed control protocol the CLI imported the whole supervisor package on its
# way to `status`: the daemon, the component machinery (asyncio, capnp, the sandbox) and
# structlog. This reproduces that import set; the rest of the call is today's CLI.
_OLD_IMPORTS = ("bitcoin_supervisor.supervisor._daemon", "bitcoin_supervisor.supervisor._policycli",
                "bitcoin_supervisor.supervisor._rpcclient", "bitcoin_supervisor.log")
_OLD_PATH = ("import sys\n" + "".join(f"import {m}\n" for m in _OLD_IMPORTS)
             + "from bitcoin_supervisor.supervisor.cli import main\nmain(sys.argv[1:])\n")

# Measured on this VM before the change (same daemon set-up, 30 runs, quiet machine):
# `status --json` 172.9 ms median, `python -c pass` 18.4 ms.
_BEFORE_NOTE = ("before the typed protocol (same VM, 30 runs): status --json 172.9 ms "
                "median vs python -c pass 18.4 ms (9.4x)")


async def _wall_ms(*argv: str) -> float:
    """Run ``argv`` to completion; return its wall time in ms. RuntimeError if it fails."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    _, err = await process.communicate()
    elapsed = (time.perf_counter() - started) * 1000
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} exited {process.returncode}: "
                           f"{err.decode(errors='replace').strip()[-300:]}")
    return elapsed


def _commands(daemon: RunningDaemon) -> dict[str, tuple[str, ...]]:
    status = ("status", "--json", "--config", str(daemon.config))
    py = sys.executable
    return {
        "python -c pass (same interpreter)": (py, "-c", "pass"),
        "import the CLI (client path)": (py, "-c", "import bitcoin_supervisor.supervisor.cli"),
        "import the old path (daemon modules)": (py, "-c", "".join(
            f"import {m};" for m in _OLD_IMPORTS)),
        "status --json, old import path": (py, "-c", _OLD_PATH, *status),
        "status --json": (CLI, *status),
    }


async def cli_status(opts: Options) -> Result:
    """Interleave every command ``rounds`` times against one sandboxed daemon, so load
    drift hits all of them alike. Raises RuntimeError if the daemon or a command fails."""
    rounds = opts.pick(3, 30)
    variant = next(v for v in ch.VARIANTS if v.sandboxed)
    daemon = await start_daemon(opts.workdir, variant)
    try:
        commands = _commands(daemon)
        samples: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(rounds):
            for label, argv in commands.items():
                samples[label].append(await _wall_ms(*argv))
    finally:
        await daemon.stop()
    base = summarize(samples["python -c pass (same interpreter)"])
    old = summarize(samples["status --json, old import path"])
    rows: list[dict[str, Cell]] = []
    for label, series in samples.items():
        stats = summarize(series)
        rows.append({"label": label, **stats.to_row(),
                     "ratio_vs_python": ratio(stats.median, base.median),
                     "ratio_vs_old_status": ratio(stats.median, old.median)})
    return Result(
        name="cli_status",
        title="bitcoin-supervisor status --json against a running daemon",
        unit="ms", baseline="python -c pass with the same interpreter; the old import path",
        columns=("label", "n", "median", "p90", "min", "ratio_vs_python",
                 "ratio_vs_old_status"),
        rows=rows,
        notes=["wall time of a whole process, interpreter start included; the daemon runs "
               "the sandboxed bundled components",
               "'old import path' = today's CLI after importing what the CLI imported "
               "before the typed control protocol: " + ", ".join(_OLD_IMPORTS),
               _BEFORE_NOTE],
        params={"rounds": rounds, "variant": variant.name})
