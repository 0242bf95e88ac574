"""A node whose RPC port is briefly taken is restarted with backoff until it binds
(issue 9: every start-up OSError used to be exit 78, never restarted)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .conftest import System, free_port, launch, stop_system


def _nth(system: System, n: int, matches: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Wait for the n-th event matching ``matches`` (counting from the daemon's start)."""
    while True:
        seen = [e for e in system.log.events if matches(e)]
        if len(seen) >= n:
            return seen[n - 1]
        known = {id(e) for e in seen}
        system.log.wait_for(lambda e, known=known: matches(e) and id(e) not in known)


def test_busy_rpc_port_is_an_ordinary_failure_not_a_config_error(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "node.toml"
    config.write_text(f"""
[supervisor]
datadir = "{tmp_path / 'data'}"
[components.node]
rpcport = {port}
[components.node.restart]
backoff_initial_s = 0.05
backoff_max_s = 0.2
start_limit_burst = 1000
""")
    squatter = socket.create_server(("127.0.0.1", port))
    system = launch(config, rpcport=port)
    try:
        for n in (1, 2):  # it fails, is restarted, fails again: never "failed" between
            exited = _nth(system, n, lambda e: e.get("event") == "component.exited"
                          and e.get("component") == "node")
            assert exited["exit_code"] == 75, exited  # EX_TEMPFAIL, not 78 (boot-refused)
            _nth(system, n, lambda e: e.get("event") == "component.restarting"
                 and e.get("component") == "node")
        squatter.close()
        system.log.wait_for(lambda e: e.get("event") == "supervisor.ready", timeout=60)
        node = system.component("node")
        assert (node["state"], node["last_exit"]["exit_code"]) == ("active", 75)
        assert node["restarts"] >= 2
        assert not any(e.get("event") == "component.state_changed" and e.get("new") == "failed"
                       for e in system.log.events)
    finally:
        squatter.close()
        stop_system(system)
