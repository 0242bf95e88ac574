"""Health checks: a component that stops answering is found by its check, killed and
restarted with reason "watchdog"; a Core-like bind-mode peer is bootstrapped under
Bitcoin Core v30's wire ids and checked through Core's Echo."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil

from tests.ipc._core_peer import CORE_PEER

from ._peers import write_program
from .conftest import launch, stop_system


def _config(tmp_path: Path) -> Path:
    program = write_program(tmp_path, "core-peer", CORE_PEER)
    config = tmp_path / "core.toml"
    config.write_text(f"""
[supervisor]
datadir = "{tmp_path / 'data'}"
[components.core]
argv = ["{program}", "{{datadir}}/regtest/node.sock"]
ipc = "bind"
socket = "{{datadir}}/regtest/node.sock"
schema = "bitcoin-core"
sandbox = "node"
health = {{ check = "echo", interval_s = 0.2, timeout_s = 0.5 }}
stop_timeout_s = 5
restart = {{ policy = "on-failure", backoff_initial_s = 0.05 }}
""")
    return config


def test_a_stopped_component_is_found_hung_killed_and_restarted(tmp_path: Path) -> None:
    system = launch(_config(tmp_path))
    try:
        system.wait_running("core")
        core = system.component("core")
        assert core["confinement"] == "enforced", core
        # Checked through Core's Echo: the peer saw construct, makeEcho and echo calls.
        system.log.wait_for(lambda e: e.get("event") == "child.log"
                            and str(e.get("line", "")).startswith("echo "))
        assert any(e.get("line") == "makeEcho" for e in system.log.events)
        # Status shows the checks that passed (logged once per run as health_passed).
        system.log.wait_for(lambda e: e.get("event") == "component.health_passed"
                            and e.get("pid") == core["pid"])
        health = system.component("core")["health"]
        assert health["check"] == "echo" and health["passed"] >= 1, health
        assert 0 <= health["last_ok_age_s"] < 60, health
        assert "Health: echo ok (" in system.cli("status", "core").stdout
        inner = psutil.Process(core["pid"]).children()[0]
        os.kill(inner.pid, signal.SIGSTOP)  # alive, but answers nothing
        failed = system.log.wait_for(lambda e: e.get("event") == "component.health_failed")
        assert (failed["check"], failed["error"]) == ("echo", "no answer within 0.5 s")
        exited = system.log.wait_for(lambda e: e.get("event") == "component.exited")
        assert exited["reason"] == "watchdog", exited
        system.wait_running("core", not_pid=core["pid"])
        after = system.component("core")
        assert after["restarts"] == 1
        assert after["last_exit"]["reason"] == "watchdog"
        assert after["last_exit"]["detail"] == "health check 'echo': no answer within 0.5 s"
        assert not psutil.pid_exists(inner.pid) or psutil.Process(inner.pid).status() == "zombie"
    finally:
        stop_system(system)
