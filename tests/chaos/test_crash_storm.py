"""Issue 9: a crash-at-start storm. A component whose program exits at once is restarted
with a growing, capped backoff until its start limit makes it ``failed``; the supervisor
stays cheap meanwhile (CPU read from /proc) and the other components keep their pids; a
config that would let such a loop run with no delay and no limit is refused."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ..integration.conftest import CLI, free_port, launch, stop_system
from ._load import WALLET, NodeRpc

BACKOFF_INITIAL_S, BACKOFF_MAX_S, BURST = 0.05, 0.4, 10
# The supervisor's share of one CPU while it restarts a crashing component: each start
# costs a plan, a cgroup and a fork/exec; the rest of the time it must sleep.
MAX_CPU_SHARE = 0.25


def _cpu_s(pid: int) -> float:
    """The process's user + system CPU seconds so far (/proc/PID/stat, its own threads
    only, not its reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _config(tmp_path: Path, port: int, restart: str) -> Path:
    config = tmp_path / "storm.toml"
    config.write_text(f"""
[supervisor]
datadir = "{tmp_path / 'data'}"
[components.node]
rpcport = {port}
[components.wallet]
[components.index]
argv = ["/bin/false", "{{fd}}"]
[components.index.restart]
{restart}
""")
    return config


def _events(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == name and e.get("component") == "index"]


@pytest.mark.timeout(400)
def test_crash_at_start_storm_backs_off_to_failed_and_spares_the_others(
        tmp_path: Path) -> None:
    port = free_port()
    restart = (f"backoff_initial_s = {BACKOFF_INITIAL_S}\nbackoff_max_s = {BACKOFF_MAX_S}\n"
               f"start_limit_burst = {BURST}\nstart_limit_interval_s = 120")
    system = launch(_config(tmp_path, port, restart), rpcport=port)
    try:
        system.wait_running("wallet", timeout=120)
        others = {n: system.component(n)["pid"] for n in ("node", "wallet")}
        cpu0, wall0 = _cpu_s(system.process.pid), time.monotonic()
        failed = system.log.wait_for(
            lambda e: e.get("event") == "component.state_changed"
            and e.get("component") == "index" and e.get("new") == "failed", timeout=180)
        cpu = _cpu_s(system.process.pid) - cpu0
        wall = time.monotonic() - wall0
        assert failed["reason"] == "start-limit-hit", failed
        delays = [e["delay_s"] for e in _events(system.log.events, "component.restarting")]
        assert len(delays) == BURST - 1, delays
        expected = [min(BACKOFF_INITIAL_S * 2 ** i, BACKOFF_MAX_S) for i in range(BURST - 1)]
        assert delays == expected, delays
        assert len(_events(system.log.events, "component.exited")) == BURST
        print(f"storm: {BURST} starts in {wall:.2f} s, supervisor CPU {cpu:.2f} s "
              f"({cpu / wall:.0%} of one core)")
        assert cpu / wall < MAX_CPU_SHARE, (cpu, wall)

        # Failed stays failed: no start behind the limit's back.
        index = system.component("index")
        assert (index["state"], index["pid"]) == ("failed", None), index
        assert {n: system.component(n)["pid"] for n in others} == others
        assert all(system.component(n)["restarts"] == 0 for n in others)
        rpc = NodeRpc(port, system.datadir / "node" / ".cookie")
        rpc.call("createwallet", WALLET)
        address = rpc.call("getnewaddress", wallet=WALLET)
        assert len(rpc.call("generatetoaddress", 2, address)) == 2
        rpc.close()
    finally:
        stop_system(system)


def test_a_zero_delay_loop_without_a_start_limit_is_refused(tmp_path: Path) -> None:
    restart = "backoff_initial_s = 0\nstart_limit_interval_s = 0"
    result = subprocess.run([CLI, "start", "--config",
                             str(_config(tmp_path, free_port(), restart))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result
    assert "an unbounded restart loop" in result.stderr, result.stderr
    assert not (tmp_path / "data" / "supervisor.sock").exists()
