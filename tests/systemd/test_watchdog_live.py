"""A hung event loop under a real systemd: the watchdog trips and systemd restarts the
unit, and nothing of the old instance survives."""

from __future__ import annotations

import time

from ._boot import alive, cgroup_pids
from .conftest import COMPONENTS, Service, wait_until

# The shipped 30 s would make this test wait 30 s for nothing; what is under test is that
# the pings come from the event loop and that a missed one ends the whole old instance.
WATCHDOG_S = 4


def test_a_stopped_event_loop_trips_the_watchdog_and_leaves_no_component(
        unit: Service) -> None:
    dropin = unit.systemd.units / f"{unit.unit}.d"
    dropin.mkdir(exist_ok=True)
    (dropin / "watchdog.conf").write_text(f"[Service]\nWatchdogSec={WATCHDOG_S}s\n")
    unit.systemd.systemctl("daemon-reload")
    unit.start()
    props = unit.show("MainPID", "NRestarts", "WatchdogUSec")
    assert props["WatchdogUSec"] == f"{WATCHDOG_S}s" and props["NRestarts"] == "0", props
    old_main = int(props["MainPID"])
    old_components = unit.running_pids()
    before = cgroup_pids(unit.cgroup())
    assert set(old_components) == COMPONENTS and len(before) > len(COMPONENTS)

    # SIGSTOP freezes the daemon's event loop like any blocking call in it would: no
    # more WATCHDOG=1. Its components keep running meanwhile.
    unit.systemd.run("kill", "-STOP", str(old_main))
    began = time.monotonic()

    def restarted() -> bool:
        now = unit.show("ActiveState", "SubState", "NRestarts", "MainPID")
        return (now["NRestarts"] == "1" and now["ActiveState"] == "active"
                and now["SubState"] == "running" and int(now["MainPID"]) != old_main)

    # watchdog timeout (SIGABRT, with a SIGCONT so that a stopped process gets it) +
    # RestartSec + start
    wait_until(restarted, timeout=120, what="systemd to restart the hung daemon")
    print(f"{unit.unit}: active again {time.monotonic() - began:.1f}s after SIGSTOP")
    assert "Watchdog timeout" in unit.journal(), unit.journal()

    new_components = unit.running_pids()
    assert set(new_components) == COMPONENTS, unit.status()
    assert not set(new_components.values()) & set(old_components.values())
    # No process of the old instance outlived it, in the unit's cgroup or anywhere.
    assert not alive(before), f"left from the hung instance: {alive(before)}"
    assert not before & cgroup_pids(unit.cgroup())
