"""The benchmark registry and the loop that runs the chosen ones inside one event loop."""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bitcoin_supervisor.interfaces import SupervisorError
from bitcoin_supervisor.ipc import make_protocol

from ._cli_bench import cli_status
from ._core_bench import echo_real_core
from ._daemon_bench import restart_latency, rss
from ._echo_bench import echo_direct_vs_brokered
from ._fork_bench import fork_server
from ._intro_bench import chain_introduced
from ._options import Options
from ._report import Result
from ._scale_bench import idle, scale
from ._spawn_bench import spawn_to_init

Benchmark = Callable[[Options], Awaitable[Result]]

BENCHMARKS: dict[str, Benchmark] = {
    "spawn_to_init": spawn_to_init,
    "echo_direct_vs_brokered": echo_direct_vs_brokered,
    "chain_introduced": chain_introduced,
    "echo_real_core": echo_real_core,
    "restart_latency": restart_latency,
    "rss": rss,
    "cli_status": cli_status,
    "fork_server": fork_server,
    "idle": idle,
    "scale": scale,
}


@dataclass
class Outcome:
    """Results of the benchmarks that finished and one-line errors of those that failed."""

    results: list[Result] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)


def run_benchmarks(names: Sequence[str], *, quick: bool,
                   on_result: Callable[[Result], None] = lambda r: None,
                   on_failure: Callable[[str, str], None] = lambda n, e: None) -> Outcome:
    """Run ``names`` in order, each in its own temporary directory, in one capnp loop.

    A benchmark that fails is recorded in ``failures`` and the next one still runs.
    Blocks until all are done; raises KeyError for an unknown name before running any.
    """
    chosen = [(name, BENCHMARKS[name]) for name in names]
    protocol = make_protocol()
    outcome = Outcome()
    with tempfile.TemporaryDirectory(prefix="bitcoin-supervisor-bench-") as tmp:
        async def main() -> None:
            for name, benchmark in chosen:
                try:
                    result = await benchmark(Options(quick=quick, workdir=Path(tmp) / name))
                except (RuntimeError, SupervisorError, OSError, TimeoutError) as exc:
                    message = f"{type(exc).__name__}: {exc}"
                    outcome.failures[name] = message
                    on_failure(name, message)
                    continue
                outcome.results.append(result)
                on_result(result)

        protocol.run(main)
    return outcome
