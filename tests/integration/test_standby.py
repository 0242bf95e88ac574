"""Warm standby (issue 9): the bundled config keeps a second wallet and index process,
confined and verified like the running one, with nothing of the datadir open; kill -9 of
the wallet promotes it (the new pid is the standby's), nothing acknowledged is lost and a
fresh standby follows; a lost standby is replaced without touching the running one; a
promotion counts as a restart; stop and shutdown leave no process."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import psutil

from .conftest import System, stop_system

_ZERO_CAPS = "0000000000000000"


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        return {k: v.strip() for k, v in (line.split(":", 1) for line in fh)}


def _ready(system: System, name: str, *, not_pid: int | None = None) -> dict[str, Any]:
    """Wait for a standby of ``name`` (other than ``not_pid``) to be ready; its event."""
    return system.log.wait_for(
        lambda e: e.get("event") == "component.standby_ready"
        and e.get("component") == name and e.get("pid") != not_pid, timeout=120)


def _standby(system: System, name: str) -> dict[str, Any]:
    standby = system.component(name)["standby"]
    assert standby is not None, f"{name} has no standby in status"
    return dict(standby)


def _open_files(pid: int) -> set[str]:
    found = set()
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        found |= {f.path for f in proc.open_files()}
    return found


def _role_process(waiter: int) -> int:
    inner = psutil.Process(waiter).children()
    assert len(inner) == 1, inner  # PID 1 of its pid namespace
    return inner[0].pid


def test_kill_9_promotes_the_standby_and_keeps_every_address(system: System) -> None:
    standby = _ready(system, "wallet")["pid"]
    shown = _standby(system, "wallet")
    assert shown["pid"] == standby and shown["ready"] is True
    assert shown["memory_bytes"] is None or shown["memory_bytes"] > 0
    # Its datadir is closed while it waits: the wallet's SQLite is open in one process.
    system.rpc("createwallet", "w")
    addresses = [system.rpc("getnewaddress", wallet="w") for _ in range(5)]
    active = system.component("wallet")["pid"]
    assert any("wallets" in p for p in _open_files(active)), _open_files(active)
    assert not any("wallets" in p for p in _open_files(standby)), _open_files(standby)
    restarts = system.component("wallet")["restarts"]
    system.log.mark()
    os.kill(_role_process(active), signal.SIGKILL)
    promoted = system.log.wait_for(
        lambda e: e.get("event") == "component.standby_promoted"
        and e.get("component") == "wallet", timeout=60)
    assert promoted["pid"] == standby
    restored = system.log.wait_for(
        lambda e: e.get("event") == "component.restored" and e.get("component") == "wallet",
        timeout=60)
    assert restored["standby"] is True and restored["pid"] == standby
    assert set(restored["steps_ms"]) >= {"activate", "rebroker", "exit_to_cgroup_killed"}
    wallet = system.component("wallet")
    assert wallet["pid"] == standby and wallet["state"] == "active"
    assert wallet["restarts"] == restarts + 1
    assert not psutil.pid_exists(active)
    for address in addresses:
        info = json.loads(system.rpc("getaddressinfo", address, wallet="w"))
        assert info["ismine"] is True, address
    fresh = _ready(system, "wallet", not_pid=standby)["pid"]
    assert fresh not in (standby, active)
    assert _standby(system, "wallet")["pid"] == fresh
    # The other components were not touched.
    assert system.log.events and not [
        e for e in system.log.events if e.get("event") == "component.exited"
        and e.get("component") != "wallet"]


def test_a_standby_is_confined_and_verified_like_the_running_process(system: System) -> None:
    host_net = os.readlink("/proc/self/ns/net")
    for name in ("wallet", "index"):
        standby = _ready(system, name)
        verified = system.log.wait_for(
            lambda e, pid=standby["pid"]: e.get("event") == "sandbox.verified"
            and e.get("pid") == pid, timeout=60)
        assert verified["state"] == "enforced" and verified["standby"] is True
        active = system.component(name)
        assert active["confinement"] == "enforced"
        pair = (active["pid"], standby["pid"])
        inner = [_role_process(pid) for pid in pair]
        for pid in (*pair, *inner):
            st = _status(pid)
            assert st["Seccomp"] == "2" and st["NoNewPrivs"] == "1", (name, pid)
            for key in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"):
                assert st[key] == _ZERO_CAPS, (name, pid, key)
        # Same uid, each in a network namespace of its own, each in a cgroup of its own.
        uids = {psutil.Process(pid).uids().real for pid in inner}
        assert len(uids) == 1 and (os.geteuid() != 0 or 0 not in uids)
        nets = {os.readlink(f"/proc/{pid}/ns/net") for pid in inner}
        assert len(nets) == 2 and host_net not in nets
        cgroups = [Path(f"/proc/{pid}/cgroup").read_text() for pid in pair]
        assert cgroups[0] != cgroups[1]


def test_a_killed_standby_is_replaced_and_the_running_one_untouched(system: System) -> None:
    standby = _ready(system, "index")["pid"]
    before = system.component("index")
    os.kill(standby, signal.SIGKILL)
    lost = system.log.wait_for(
        lambda e: e.get("event") == "component.standby_lost"
        and e.get("component") == "index", timeout=60)
    assert lost["pid"] == standby and lost["retry_s"] > 0
    fresh = _ready(system, "index", not_pid=standby)["pid"]
    after = system.component("index")
    assert fresh != standby and after["pid"] == before["pid"]
    assert after["restarts"] == before["restarts"] and after["state"] == "active"
    assert not psutil.pid_exists(standby)


def test_stop_and_shutdown_leave_no_process(system: System) -> None:
    pids = {n: (_ready(system, n)["pid"], system.component(n)["pid"])
            for n in ("wallet", "index")}
    system.cli("stop", "wallet")
    wallet = system.component("wallet")
    assert wallet["state"] == "inactive" and wallet["standby"]["pid"] is None
    assert not any(psutil.pid_exists(pid) for pid in pids["wallet"])
    system.cli("start", "wallet")
    again = _ready(system, "wallet", not_pid=pids["wallet"][0])["pid"]
    every = [again, *pids["index"]]
    tree = [p.pid for p in psutil.Process(system.process.pid).children(recursive=True)]
    assert set(every) <= set(tree)
    stop_system(system)
    assert system.process.returncode == 0
    left = [pid for pid in tree if psutil.pid_exists(pid)
            and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert left == []
