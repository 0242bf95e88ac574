"""A benchmark's daemon ends with the benchmark, also when the benchmark is killed (a
test's deadline): in its own session, nothing else would end it, and an orphaned daemon
kept its components, mounts and ports for good."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]

# Starts a bench daemon, prints its pid, then waits to be killed.
_BENCH = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from bench import DAEMON_VARIANTS
    from bench._daemon import start_daemon

    async def main():
        variant = next(v for v in DAEMON_VARIANTS if v.sandboxed)
        daemon = await start_daemon(Path(sys.argv[1]), variant, fork_server=False)
        print(daemon.pid, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
""")


def test_a_killed_benchmark_takes_its_daemon_and_components_along(tmp_path: Path) -> None:
    bench = subprocess.Popen([sys.executable, "-c", _BENCH, str(tmp_path)], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert bench.stdout is not None
        line = bench.stdout.readline()
        assert line.strip().isdigit(), f"the bench daemon did not start (exit {bench.poll()})"
        daemon = psutil.Process(int(line))
        components = daemon.children(recursive=True)
        assert components, "the daemon runs no component"
        os.kill(bench.pid, signal.SIGKILL)
        bench.wait(timeout=30)
        # SIGTERM: the daemon stops its components in order, then exits.
        gone, alive = psutil.wait_procs([daemon, *components], timeout=60)
        assert not alive, f"still running after the bench was killed: {alive}"
        # In order: it unmounted the components' disk images on the way out.
        mounts = [line.split()[4] for line in
                  Path("/proc/self/mountinfo").read_text().splitlines()]
        left = [m for m in mounts if Path(m).is_relative_to(tmp_path)]
        assert not left, f"the daemon left its mounts behind: {left}"
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
