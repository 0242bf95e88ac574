"""The shipped unit under a real systemd: readiness, clean stop, restart after a crash."""

from __future__ import annotations

import json
import time
from typing import Any

from ._boot import alive, cgroup_pids
from .conftest import (
    COMPONENTS,
    STATE_DIR,
    UNIT_NAME,
    VENV,
    Service,
    parse_log_time,
    parse_show_time,
    wait_until,
)


def _start(service: Service) -> float:
    began = time.monotonic()
    result = service.systemd.run("systemctl", "start", UNIT_NAME, check=False, timeout=60)
    took = time.monotonic() - began
    assert result.returncode == 0, f"systemctl start failed:\n{result.stderr}\n{service.journal()}"
    print(f"systemctl start returned after {took:.2f}s")
    return took


def test_start_returns_once_every_component_runs(service: Service) -> None:
    _start(service)
    props = service.show("ActiveState", "SubState", "ActiveEnterTimestamp", "MainPID")
    assert (props["ActiveState"], props["SubState"]) == ("active", "running")
    pids = service.running_pids()
    assert set(pids) == COMPONENTS, service.status()
    assert service.status()["supervisor"]["pid"] == int(props["MainPID"])

    # systemd turned the unit active only on READY=1, which the daemon sends after it saw
    # every component run: the daemon stamps its log lines before sending.
    active_at = parse_show_time(props["ActiveEnterTimestamp"])
    events = service.log_events()
    ready = [e for e in events if e["event"] == "supervisor.ready"]
    assert len(ready) == 1, service.journal()
    ready_at = parse_log_time(ready[0]["timestamp"])
    assert ready_at <= active_at
    running_at = {e["component"]: parse_log_time(e["timestamp"]) for e in events
                  if e["event"] == "component.state_changed" and e["new"] == "running"}
    assert set(running_at) == COMPONENTS
    assert max(running_at.values()) <= ready_at


def test_stop_stops_components_and_leaves_nothing_in_the_cgroup(service: Service) -> None:
    _start(service)
    before = cgroup_pids(service.cgroup())
    # daemon + per component a waiter outside and the role inside its pid namespace
    assert len(before) >= 1 + len(COMPONENTS), before

    began = time.monotonic()
    service.systemd.systemctl("stop", UNIT_NAME)
    print(f"systemctl stop returned after {time.monotonic() - began:.2f}s")

    props = service.show("ActiveState", "Result", "ExecMainStatus")
    # Result=success with exit status 0: the daemon stopped its components itself and
    # exited before TimeoutStopSec; nothing was left for systemd's SIGKILL.
    assert props == {"ActiveState": "inactive", "Result": "success",
                     "ExecMainStatus": "0"}, props
    systemd_lines = [line for line in service.journal().splitlines()
                     if not line.startswith("{")]
    assert not [line for line in systemd_lines if "SIGKILL" in line], systemd_lines
    assert not alive(before), f"left running after stop: {alive(before)}"
    assert not cgroup_pids(service.cgroup())
    terminated = [e["component"] for e in service.log_events()
                  if e["event"] == "component.state_changed" and e["new"] == "stop-sigterm"]
    assert set(terminated) == COMPONENTS and terminated[-1] == "node", terminated

def test_killed_daemon_is_restarted_without_orphans(service: Service) -> None:
    _start(service)
    props = service.show("MainPID", "NRestarts")
    old_main = int(props["MainPID"])
    old_components = service.running_pids()
    before = cgroup_pids(service.cgroup())
    assert props["NRestarts"] == "0"

    service.systemd.run("kill", "-9", str(old_main))
    began = time.monotonic()

    def restarted() -> bool:
        now = service.show("ActiveState", "SubState", "NRestarts", "MainPID")
        return (now["NRestarts"] == "1" and now["ActiveState"] == "active"
                and now["SubState"] == "running" and int(now["MainPID"]) != old_main)

    wait_until(restarted, timeout=30, what="systemd to restart the killed daemon")
    print(f"active again {time.monotonic() - began:.2f}s after kill -9 (RestartSec=5s)")

    new_components = service.running_pids()
    assert set(new_components) == COMPONENTS, service.status()
    assert not set(new_components.values()) & set(old_components.values())
    # Every process of the first daemon's run is gone: no component outlived it.
    assert not alive(before), f"orphans of the killed daemon: {alive(before)}"
    assert not before & cgroup_pids(service.cgroup())


def test_reload_applies_a_change_and_a_bad_config_keeps_the_old_one(unit: Service) -> None:
    service = unit
    service.start()
    main = service.show("MainPID")["MainPID"]
    before = service.running_pids()
    good = service.config.read_text()
    service.config.write_text(good.replace("[components.index]\n",
                                           "[components.index]\nstop_timeout_s = 7\n"))
    service.systemd.systemctl("reload", service.unit)
    after = service.running_pids()
    assert set(after) == COMPONENTS, service.status()
    assert after["index"] != before["index"]
    assert (after["node"], after["wallet"]) == (before["node"], before["wallet"])
    props = service.show("ActiveState", "SubState", "MainPID")
    assert props == {"ActiveState": "active", "SubState": "running", "MainPID": main}

    service.config.write_text(good + '\n[components.extra]\nrole = "indx"\n')
    refused = service.systemd.run("systemctl", "reload", service.unit, check=False,
                                  timeout=60)
    assert refused.returncode != 0
    props = service.show("ActiveState", "SubState", "MainPID", "StatusText")
    assert (props["ActiveState"], props["SubState"], props["MainPID"]) == (
        "active", "running", main)
    assert props["StatusText"].startswith("reload failed, previous config kept: "), props
    assert "indx" in props["StatusText"]
    assert service.running_pids() == after
    failed = [e for e in service.log_events() if e["event"] == "config.reload_failed"]
    assert len(failed) == 1 and service.systemd.inner(service.config) in failed[0]["error"]


def test_events_reach_the_journal_with_priority_and_fields(service: Service) -> None:
    _start(service)
    wallet_pid = service.running_pids()["wallet"]
    service.config.write_text(service.config.read_text() + "\n[components.x]\nrole = 1\n")
    service.systemd.run("systemctl", "reload", UNIT_NAME, check=False, timeout=60)
    service.systemd.run("journalctl", "--sync")

    def entries(*match: str) -> list[dict[str, Any]]:
        out = service.systemd.run("journalctl", "-u", UNIT_NAME, *match, "-o", "json",
                                  "--no-pager").stdout
        return [json.loads(line) for line in out.splitlines() if line]

    wallet = entries("COMPONENT=wallet")
    assert wallet and all(e["COMPONENT"] == "wallet" for e in wallet)
    events = {e["EVENT"] for e in wallet}
    assert {"component.spawned", "sandbox.verified", "component.state_changed"} <= events
    assert str(wallet_pid) in {e.get("COMPONENT_PID") for e in wallet}
    running = [e for e in wallet if e["EVENT"] == "component.state_changed"
               and e.get("NEW") == "running"]
    assert running and running[0]["PRIORITY"] == "6"
    assert running[0]["SYSLOG_IDENTIFIER"] == "bitcoin-supervisor"
    # MESSAGE stays the JSON line (what `journalctl -u … -o cat` shows).
    assert json.loads(running[0]["MESSAGE"])["component"] == "wallet"
    failed = entries("EVENT=config.reload_failed")
    assert len(failed) == 1 and failed[0]["PRIORITY"] == "3", failed
    # Sent natively, not through stderr: the journal stream carried no event line.
    assert not [e for e in entries("_TRANSPORT=stdout") if e["MESSAGE"].startswith("{")]


def test_the_cli_finds_the_daemon_through_its_runtime_directory(service: Service) -> None:
    _start(service)
    # From /, with no --datadir or --config: the record in RuntimeDirectory= names it.
    cli = f"cd / && exec {VENV}/bin/bitcoin-supervisor status --json"
    found = json.loads(service.systemd.run("sh", "-c", cli).stdout)
    assert found["supervisor"]["pid"] == int(service.show("MainPID")["MainPID"])
    assert found["supervisor"]["datadir"] == STATE_DIR
    assert not [e for e in service.log_events() if e["event"] == "supervisor.record_failed"]
    records = service.systemd.run("ls", "-A", "/run/bitcoin-supervisor").stdout.split()
    assert len(records) == 1 and records[0].endswith(".json")
    service.systemd.systemctl("stop", UNIT_NAME)
    # systemd removes the runtime directory with the unit: no stale record survives.
    assert service.systemd.run("test", "-e", "/run/bitcoin-supervisor", check=False
                               ).returncode == 1
