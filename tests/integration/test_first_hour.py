"""What a new user meets first: the CLI finds the running daemon from their home
directory, and Ctrl-C in the daemon's terminal stops the system in order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import psutil

from .conftest import CLI, GENESIS, free_port, launch, stop_system, write_config


def test_cli_finds_the_running_daemon_from_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    run_dir = tmp_path / "run"
    env = {**os.environ, "BITCOIN_SUPERVISOR_RUNTIME_DIR": str(run_dir), "HOME": str(home),
           "XDG_CONFIG_HOME": str(home / ".config")}
    env.pop("BITCOIN_SUPERVISOR_CONFIG", None)
    port = free_port()
    config = write_config(tmp_path, port)
    system = launch(config, env=env, rpcport=port)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, *args], cwd=home, env=env, capture_output=True,
                              text=True, timeout=120)

    try:
        system.log.wait_for(lambda e: e.get("event") == "supervisor.ready")
        status = cli("status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["supervisor"]["config"] == str(config)
        # rpc needs the config too (port, cookie): the record names it.
        rpc = cli("rpc", "getblockhash", "0")
        assert (rpc.returncode, rpc.stdout.strip()) == (0, GENESIS), rpc.stderr
        assert cli("shutdown").returncode == 0
        assert system.process.wait(timeout=60) == 0
    finally:
        stop_system(system)
    assert list(run_dir.iterdir()) == [], "the daemon removes its record when it stops"
    gone = cli("status")
    assert gone.returncode == 3 and f"none recorded in {run_dir}" in gone.stderr


def test_ctrl_c_reaches_only_the_supervisor(tmp_path: Path) -> None:
    port = free_port()
    system = launch(write_config(tmp_path, port), rpcport=port)
    try:
        system.log.wait_for(lambda e: e.get("event") == "supervisor.ready")
        daemon = system.process.pid
        # launch() made the daemon a process group leader, as a shell does for a
        # foreground job: Ctrl-C is SIGINT to that whole group.
        assert os.getpgid(daemon) == daemon
        for comp in system.status()["components"]:
            for proc in (psutil.Process(comp["pid"]), *psutil.Process(comp["pid"]).children()):
                assert os.getsid(proc.pid) != os.getsid(daemon), comp["name"]
        os.killpg(daemon, signal.SIGINT)
        assert system.process.wait(timeout=60) == 0
    finally:
        stop_system(system)
    system.log.wait_for(lambda e: e.get("event") == "supervisor.stopped")
    exits = [e for e in system.log.events if e.get("event") == "component.exited"]
    assert sorted(e["component"] for e in exits) == ["index", "node", "wallet"]
    for event in exits:
        assert event["reason"] == "shutdown" and event["signal"] != "SIGINT", event
