"""The bundled system runs sandboxed: what /proc shows, what status says, and a
component killed by its filter is reported as such and restarted as a failure."""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

from .._audit import why_unnamed
from .conftest import GENESIS, System, index_override_config, launch, start_system, stop_system

_ZERO_CAPS = "0000000000000000"


def _proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        return {k: v.strip() for k, v in (line.split(":", 1) for line in fh)}


def test_every_process_is_confined(system: System) -> None:
    host_net = os.readlink("/proc/self/ns/net")
    uids = set()
    for comp in system.status()["components"]:
        waiter = psutil.Process(comp["pid"])
        inner = waiter.children()
        assert len(inner) == 1, f"{comp['name']}: the role runs as the waiter's only child"
        for proc in (waiter, inner[0]):
            status = _proc_status(proc.pid)
            assert status["Seccomp"] == "2", (comp["name"], proc.pid)
            assert status["NoNewPrivs"] == "1"
            for key in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"):
                assert status[key] == _ZERO_CAPS, (comp["name"], key)
        net = os.readlink(f"/proc/{inner[0].pid}/ns/net")
        assert (net == host_net) == (comp["name"] == "node")
        if os.geteuid() == 0:
            uid = inner[0].uids().real
            assert uid != 0
            uids.add(uid)
        # What status claims is what the supervisor read from /proc itself.
        assert comp["confinement"] == "enforced", comp
        assert f"uid {inner[0].uids().real}" in comp["confinement_detail"]
        summary = comp["sandbox"]
        assert summary["seccomp_default"] == "kill_process"
        assert summary["seccomp_allowed"] > 50
        assert summary["network"] == ("host" if comp["name"] == "node" else "none")
        assert summary["landlock"] is True and summary["landlock_abi"] >= 1
    if os.geteuid() == 0:
        assert len(uids) == 3, "each role runs as its own outer uid"
    assert "Confined: enforced (verified): pid " in system.cli("status", "wallet").stdout
    assert "Policy: ns cgroup,ipc,mount,net,pid,user,uts; network none; seccomp " \
           "kill_process" in system.cli("status", "wallet").stdout


# An index whose process opens an AF_INET socket shortly after it starts serving: its
# policy forbids that, so the kernel kills it with SIGSYS.
_VIOLATOR = """
import asyncio, socket
from bitcoin_supervisor.roles._main import run_role
from bitcoin_supervisor.roles.index import IndexProcess

class Violator(IndexProcess):
    async def start(self, settings):
        init = await super().start(settings)
        asyncio.get_running_loop().call_later(0.3, socket.socket, socket.AF_INET)
        return init

run_role(Violator)
"""


def test_sandbox_kill_is_reported_and_restarted(tmp_path: Path) -> None:
    since = time.time()
    system = launch(index_override_config(
        tmp_path, [sys.executable, "-c", _VIOLATOR, "-ipcfd", "{fd}"], 2))
    watcher = system.log
    try:
        violation = watcher.wait_for(lambda e: e.get("event") == "sandbox.violation")
        # The syscall is named whenever the kernel logged it; a bare SIGSYS only when
        # the kernel log shows why it could not (rate limit, pid namespace, unreadable).
        if violation["syscall"] is not None:
            assert violation["detail"] == "killed by sandbox: syscall socket"
        else:
            assert violation["detail"].startswith("killed by sandbox: SIGSYS (")
            assert why_unnamed(since, time.time()), violation
        watcher.wait_for(lambda e: e.get("event") == "component.state_changed"
                         and e.get("component") == "index" and e.get("new") == "failed")
        index = system.component("index")
        assert index["reason"] == "start-limit-hit"
        assert index["last_exit"]["signal"] == "SIGSYS"
        assert index["last_exit"]["reason"] == "sandbox"
        assert index["last_exit"]["detail"].startswith("killed by sandbox: ")
        restarts = [e for e in watcher.events if e.get("event") == "component.restarting"
                    and e.get("component") == "index"]
        assert len(restarts) == 1, "a sandbox kill counts as a failure for the restart policy"
        human = system.cli("status", "index").stdout
        # Later kills may find their audit record rate-limited away by the kernel.
        assert re.search(r"Last exit: signal SIGSYS \(sandbox\) killed by sandbox: "
                         r"(syscall socket|SIGSYS \(the kernel log names no syscall"
                         r"|SIGSYS \(running in a pid namespace)", human)
    finally:
        stop_system(system)


def test_unprivileged_daemon_sandboxes_with_user_namespaces() -> None:
    nobody = 65534
    # pytest's own tmp dirs are 0700 root: give the unprivileged daemon a dir of its own.
    base = Path(tempfile.mkdtemp(prefix="bsup-unpriv-", dir="/var/tmp"))
    try:
        os.chown(base, nobody, nobody)
        system = start_system(base, uid=nobody)
        try:
            assert psutil.Process(system.status()["supervisor"]["pid"]).uids().real == nobody
            assert system.rpc("getblockhash", "0") == GENESIS
            for comp in system.status()["components"]:
                inner = psutil.Process(comp["pid"]).children()[0]
                assert inner.uids().real == nobody  # no outer uid switch without root
                # Forked by its role's fork server, which works unprivileged too: no exec
                # (the template's command line), and the daemon's own child.
                forked = psutil.Process(comp["pid"])
                assert "bitcoin_supervisor.sandbox._forkserver" in forked.cmdline()
                assert forked.ppid() == system.status()["supervisor"]["pid"]
                status = _proc_status(inner.pid)
                assert (status["Seccomp"], status["NoNewPrivs"]) == ("2", "1")
                assert status["CapEff"] == _ZERO_CAPS
                assert comp["sandbox"]["uid"] is None
                net = os.readlink(f"/proc/{inner.pid}/ns/net")
                assert (net == os.readlink("/proc/self/ns/net")) == (comp["name"] == "node")
                # Loop mounts need root: no disk budget, and status says so plainly.
                assert comp["disk"]["enforced"] is False, comp["disk"]
                assert "loop mounts need root" in comp["disk"]["note"]
            assert "no budget (" in system.cli("status", "wallet").stdout
            assert not (base / "data" / "images").exists()
        finally:
            stop_system(system)
        assert system.process.returncode == 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_shutdown_ends_every_component_with_exit_code_0(tmp_path: Path) -> None:
    system = start_system(tmp_path)
    try:
        system.rpc("createwallet", "w")  # the wallet has state to flush
    finally:
        stop_system(system)
    assert system.process.returncode == 0
    for name in ("node", "wallet", "index"):
        exited = system.log.wait_for(lambda e, n=name: e.get("event") == "component.exited"
                                     and e.get("component") == n)
        assert (exited["exit_code"], exited["signal"], exited["reason"]) == (
            0, None, "shutdown"), exited
