"""Real foreign programs under the supervisor: libmultiprocess's mpcalculator (spawn mode,
fd as its only argument) and Bitcoin Core v30's bitcoin-node (bind mode, Core's wire ids).
They run when MPCALCULATOR / BITCOIN_NODE name a binary built by hand (never shipped);
otherwise the summary says plainly that they did not."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.conftest import NOT_RUN

from .conftest import launch, stop_system


def _binary(variable: str, what: str) -> Path | None:
    value = os.environ.get(variable)
    if not value:
        NOT_RUN.append(f"{what}: set {variable} to a built binary to run it")
        return None
    path = Path(value)
    assert path.is_file() and os.access(path, os.X_OK), f"{variable}={value} is not executable"
    return path


def _kill9_and_restart(tmp_path: Path, config: str, name: str) -> None:
    path = tmp_path / "real.toml"
    path.write_text(config)
    system = launch(path)
    try:
        system.wait_running(name)
        first = system.component(name)
        # Health-checked every 0.2-0.5 s: no check may fail around the kill.
        system.log.mark()
        os.kill(first["pid"], signal.SIGKILL)
        system.wait_running(name, not_pid=first["pid"])
        after = system.component(name)
        assert after["restarts"] == 1 and after["last_exit"]["signal"] == "SIGKILL", after
        assert not any(e.get("event") == "component.health_failed" for e in system.log.events)
    finally:
        stop_system(system)


def test_mpcalculator_runs_health_checked_and_restarts_after_kill9(tmp_path: Path) -> None:
    binary = _binary("MPCALCULATOR", "libmultiprocess mpcalculator (spawn mode)")
    if binary is None:
        return
    _kill9_and_restart(tmp_path, f"""
[supervisor]
datadir = "{tmp_path / 'data'}"
[components.calc]
argv = ["{binary}", "{{fd}}"]
schema = "mp-example"
sandbox = "none"
health = {{ check = "construct", interval_s = 0.2, timeout_s = 2 }}
restart = {{ policy = "on-failure", backoff_initial_s = 0.05 }}
""", "calc")


def test_bitcoin_node_in_bind_mode_restarts_after_kill9(tmp_path: Path) -> None:
    binary = _binary("BITCOIN_NODE", "Bitcoin Core v30 bitcoin-node (bind mode)")
    if binary is None:
        return
    _kill9_and_restart(tmp_path, f"""
[supervisor]
datadir = "{tmp_path / 'data'}"
[components.core]
argv = ["{binary}", "-regtest", "-datadir={{datadir}}", "-ipcbind=unix", "-listen=0",
        "-server=0"]
ipc = "bind"
socket = "{{datadir}}/regtest/node.sock"
schema = "bitcoin-core"
sandbox = "none"
health = {{ check = "echo", interval_s = 0.5, timeout_s = 5 }}
restart = {{ policy = "on-failure", backoff_initial_s = 0.05 }}
""", "core")
