"""Control verbs, readiness notification and restart limits against a real daemon."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

from .conftest import System, free_port, index_override_config, launch, stop_system, write_config


def test_stop_and_start_one_component(system: System) -> None:
    before = system.pids()
    stopped = json.loads(system.cli("stop", "index", "--json").stdout)
    assert stopped["component"]["state"] == "inactive"
    assert stopped["component"]["pid"] is None
    index = system.component("index")
    assert index["last_exit"]["reason"] == "stopped-by-user"
    assert system.pids()["node"] == before["node"]
    system.cli("start", "index")
    after = system.pids()
    assert after["index"] not in (None, before["index"])
    assert after["node"] == before["node"] and after["wallet"] == before["wallet"]
    assert system.component("index")["restarts"] == 0  # user actions are not auto-restarts


def test_human_status_reads_like_systemctl(system: System) -> None:
    out = system.cli("status").stdout
    assert re.search(r"● node — role node\n\s+Active: active \(running\)", out)
    assert f"Main PID: {system.pids()['wallet']}" in out
    one = system.cli("status", "wallet").stdout
    assert "wallet" in one and "index —" not in one


def test_ready_notification_reaches_notify_socket(tmp_path: Path) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = tmp_path / "notify.sock"
    notify.bind(str(notify_path))
    notify.settimeout(60)
    system = launch(write_config(tmp_path, free_port()), env={
        **os.environ, "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "200000"})
    try:
        messages = []
        while "READY=1" not in messages:
            messages.append(notify.recv(4096).decode())
        states = [m for m in messages if m != "WATCHDOG=1"]
        assert states[-2] == "STATUS=node active, wallet active, index active"
        assert all(m.startswith("STATUS=") for m in states[:-1])
        # Watchdog pings keep coming from the daemon's loop (every WATCHDOG_USEC / 2).
        pings = [notify.recv(4096).decode() for _ in range(3)]
        assert pings == ["WATCHDOG=1"] * 3
        # READY=1 only once every component runs.
        states = {c["name"]: c["state"] for c in system.status()["components"]}
        assert set(states.values()) == {"active"}
    finally:
        stop_system(system)
        notify.close()
    assert system.process.returncode == 0


def test_component_that_cannot_boot_hits_start_limit(tmp_path: Path) -> None:
    system = launch(index_override_config(tmp_path, ["/bin/false", "{fd}"], 3))
    watcher = system.log
    try:
        watcher.wait_for(lambda e: e.get("event") == "component.state_changed"
                         and e.get("component") == "index" and e.get("new") == "failed")
        index = system.component("index")
        assert index["state"] == "failed" and index["reason"] == "start-limit-hit"
        assert index["pid"] is None
        starts = [e for e in watcher.events if e.get("event") == "component.spawned"
                  and e.get("component") == "index"]
        assert len(starts) == 3
        assert system.component("node")["state"] == "active"
        # The start limit holds until a user asks again.
        again = system.cli("start", "index", check=False)
        assert again.returncode == 1 and "failed" in again.stderr
    finally:
        stop_system(system)
