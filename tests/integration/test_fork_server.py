"""Fork servers (issue 9): roles forked from their template are confined, verified and hold
only their own descriptors; a killed wallet comes back from it without leaving a zombie; a
dead template is restarted and a hung one is bypassed (cold start); children of one
template share no randomness and build their own capnp state; a child that outlives its
template still has its exit status reported exactly (78: failed at once; 75 or 3: counted
and restarted; SIGKILL: named) and is reaped (it is the daemon's child)."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from bitcoin_supervisor.sandbox import fork_wire, make_plan, plan_fd
from bitcoin_supervisor.supervisor._forkserver import _ForkedChild

from .conftest import REPO, System, start_system, stop_system

_TEMPLATE = "bitcoin_supervisor.sandbox._forkserver"


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    """The bundled config without its warm standbys: a killed wallet is forked again,
    which is what these tests are about (test_standby.py covers promotions)."""
    running = start_system(tmp_path, standby=False)
    try:
        yield running
    finally:
        stop_system(running)
_ZERO_CAPS = "0000000000000000"


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        return {k: v.strip() for k, v in (line.split(":", 1) for line in fh)}


def _fds(pid: int) -> dict[int, str]:
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed meanwhile
            continue
    return out


def _template_of(system: System, role: str) -> psutil.Process:
    """The daemon's template of ``role`` (its children are the daemon's, not its own)."""
    # Forked children run the template's command line (no exec): told apart by pid.
    components = set(system.pids().values())
    templates = [p for p in psutil.Process(system.process.pid).children()
                 if p.pid not in components and _TEMPLATE in p.cmdline()
                 and f"roles.{role}:" in " ".join(p.cmdline())]
    assert len(templates) == 1, templates
    return templates[0]


def _sockets(pid: int) -> set[str]:
    return {t for t in _fds(pid).values() if t.startswith("socket:")}


def test_forked_roles_are_confined_and_hold_only_their_own_fds(system: System) -> None:
    comps = {c["name"]: c for c in system.status()["components"]}
    host_net = os.readlink("/proc/self/ns/net")
    trees = {}
    for name, comp in comps.items():
        template = _template_of(system, name)
        assert template.ppid() == system.process.pid, "templates are the daemon's children"
        assert psutil.Process(comp["pid"]).ppid() == system.process.pid, \
            "forked roles are the daemon's children too (CLONE_PARENT)"
        inner = psutil.Process(comp["pid"]).children()
        assert len(inner) == 1
        trees[name] = (template.pid, comp["pid"], inner[0].pid)
        assert comp["confinement"] == "enforced", comp
        for pid in (comp["pid"], inner[0].pid):
            st = _status(pid)
            assert st["Seccomp"] == "2" and st["NoNewPrivs"] == "1", (name, pid)
            for key in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"):
                assert st[key] == _ZERO_CAPS, (name, key)
        assert (os.readlink(f"/proc/{inner[0].pid}/ns/net") == host_net) == (name == "node")
        if os.geteuid() == 0:
            assert psutil.Process(inner[0].pid).uids().real != 0
        # The template: no new privileges, never the full root capability set.
        st = _status(template.pid)
        assert st["NoNewPrivs"] == "1"
        assert int(st["CapBnd"], 16) != (1 << 41) - 1 and int(st["CapBnd"], 16) != 0 \
            or os.geteuid() != 0
        if name != "node":
            assert os.readlink(f"/proc/{template.pid}/ns/net") != host_net
    for name, (template, waiter, inner_pid) in trees.items():
        others = set()
        for other, pids in trees.items():
            for pid in pids:
                if other != name or pid == template:
                    others |= _sockets(pid)
        for pid in (waiter, inner_pid):
            fds = _fds(pid)
            assert not (set(fds.values()) & others), (name, pid, fds)
            datadir = str(system.datadir / name)
            for fd, target in fds.items():
                assert (target.startswith(("socket:", "pipe:", "anon_inode:", datadir))
                        or target == "/dev/null"), (name, pid, fd, target)
        assert len(_fds(waiter)) <= 3, "the waiter keeps stderr and its liveness pipe only"


def test_killed_wallet_comes_back_from_its_template_and_leaves_no_zombie(
        system: System) -> None:
    old = system.component("wallet")["pid"]
    template = _template_of(system, "wallet")
    system.log.mark()
    os.kill(old, signal.SIGKILL)
    system.wait_running("wallet", not_pid=old)
    restored = system.log.wait_for(lambda e: e.get("event") == "component.restored"
                                   and e.get("component") == "wallet")
    assert restored["fork_server"] is True
    assert restored["total_ms"] > 0 and set(restored["steps_ms"]) >= {
        "exit_to_cgroup_killed", "spawn", "launched_to_init", "rebroker"}
    assert _template_of(system, "wallet").pid == template.pid
    assert not psutil.pid_exists(old), "the daemon reaped its forked child"
    for child in psutil.Process(system.process.pid).children():
        assert child.status() != psutil.STATUS_ZOMBIE
    assert system.component("wallet")["confinement"] == "enforced"
    assert system.rpc("createwallet", "w").strip()


def test_dead_template_is_restarted_and_a_hung_one_is_bypassed(system: System) -> None:
    old = system.component("wallet")["pid"]
    template = _template_of(system, "wallet")
    system.log.mark()
    os.kill(template.pid, signal.SIGKILL)
    system.log.wait_for(lambda e: e.get("event") == "fork_server.exited"
                        and "wallet" in e.get("entry", ""))
    system.log.wait_for(lambda e: e.get("event") == "fork_server.started"
                        and "wallet" in e.get("entry", "") and e.get("restarted") is True)
    # Its child lives on (it is the daemon's) and still answers.
    assert system.component("wallet")["pid"] == old
    assert system.rpc("createwallet", "w").strip()
    # Its template is gone, yet its end is reported as it happened (a signal, not a
    # guess), counted as a restart, and it is reaped by the daemon: no zombie anywhere.
    system.log.mark()
    os.kill(old, signal.SIGKILL)
    system.wait_running("wallet", not_pid=old)
    comp = system.component("wallet")
    assert (comp["last_exit"]["reason"], comp["last_exit"]["signal"]) == (
        "signal", "SIGKILL"), comp
    assert comp["restarts"] == 1, comp
    assert not psutil.pid_exists(old)
    wallet = comp["pid"]
    fresh = _template_of(system, "wallet")
    assert fresh.pid != template.pid
    system.log.mark()
    # A stopped template cannot fork: the spawn times out (SPAWN_TIMEOUT_S), the
    # supervisor kills the hung template and starts another. The wallet comes back
    # either cold (no template ready yet: logged) or from the replacement, whichever is
    # ready first; never from the stopped one (it forks nothing).
    os.kill(fresh.pid, signal.SIGSTOP)
    os.kill(wallet, signal.SIGKILL)
    system.log.wait_for(lambda e: e.get("event") == "fork_server.started"
                        and "wallet" in e.get("entry", "") and e.get("restarted") is True,
                        timeout=90)
    system.wait_running("wallet", not_pid=wallet, timeout=90)
    comp = system.component("wallet")
    assert comp["confinement"] == "enforced"
    assert comp["last_exit"]["signal"] == "SIGKILL", comp
    assert not fresh.is_running() or fresh.status() == psutil.STATUS_ZOMBIE
    assert system.rpc("createwallet", "w2").strip()


def _start_template(entry: str) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """A template for ``entry`` with this test process as its supervisor."""
    control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    # Not -I: the probe entries live in this checkout's tests package (cwd on the path).
    template = subprocess.Popen(
        [sys.executable, "-m", _TEMPLATE, "--control-fd", str(theirs.fileno()),
         "--entry", entry, "--parent", str(os.getpid())],
        pass_fds=(theirs.fileno(),), cwd=REPO, stdin=subprocess.DEVNULL)
    theirs.close()
    ready = fork_wire.receive(control)
    assert ready is not None and ready.op == "ready", ready
    return template, control


def _spawn_probe(control: socket.socket, tmp_path: Path,
                 ident: int) -> tuple[int, int, int, socket.socket]:
    plan = make_plan(None, name=f"probe{ident}", executable=Path(sys.executable),
                     cwd=tmp_path)
    pfd = plan_fd(plan)
    ours, theirs = socket.socketpair()
    out_r, out_w = os.pipe()
    try:
        fork_wire.send(control, "spawn", (theirs.fileno(), out_w, 2, pfd), id=ident,
                       argv=["probe", "-ipcfd", "{fd}"], env={"PROBE": str(ident)})
    finally:
        for fd in (out_w, pfd):
            os.close(fd)
        theirs.close()
    reply = fork_wire.receive(control)
    assert reply is not None and reply.op == "spawned", reply
    return int(reply.fields["pid"]), reply.fds[0], out_r, ours


def _exit_code(pidfd: int) -> int:
    """Wait for our child behind ``pidfd`` and reap it: its exit code, or -signal."""
    result = os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
    assert result is not None
    return result.si_status if result.si_code == os.CLD_EXITED else -result.si_status


def test_children_of_one_template_share_no_randomness_nor_fds(tmp_path: Path) -> None:
    template, control = _start_template("tests.integration._forkprobe:main")
    try:
        children = [_spawn_probe(control, tmp_path, i) for i in (1, 2)]
        reports: list[dict[str, Any]] = []
        for pid, _pidfd, out_r, link in children:
            with os.fdopen(out_r) as out:
                reports.append(json.loads(out.readline()))
            link.close()
            assert reports[-1]["pid"] == pid
            assert psutil.Process(pid).ppid() == os.getpid(), "the supervisor's child"
        assert [_exit_code(pidfd) for _, pidfd, _, _ in children] == [0, 0]
        for _, pidfd, _, _ in children:
            os.close(pidfd)
        first, second = reports
        assert first["urandom"] != second["urandom"]
        assert first["random"] != second["random"], "random was not re-seeded after fork"
        assert first["echo_ok"] and second["echo_ok"], "capnp state built after the fork"
        for report in reports:
            ipc = int(report["argv"][2])
            targets = set(report["fds"].values())
            assert set(map(int, report["fds"])) - {0, 1, 2, ipc} <= {
                int(fd) for fd, t in report["fds"].items() if t.startswith("/proc/")}, report
            assert _sockets(template.pid).isdisjoint(targets), "a template fd leaked"
        assert psutil.Process(template.pid).children() == []
    finally:
        control.close()  # the template exits when the supervisor lets go
        assert template.wait(timeout=60) == 0


def test_exit_status_of_a_child_that_outlives_its_template(tmp_path: Path) -> None:
    """Kill the template, then end its children: a configuration failure (78), a crash
    (3) and a SIGKILL each reach the supervisor's handle as they happened, and each child
    is reaped (no zombie), through the supervisor's own ``_ForkedChild``."""
    template, control = _start_template("tests.integration._exitprobe:main")
    try:
        children = [_spawn_probe(control, tmp_path, i) for i in (1, 2, 3)]
        for _, _, out_r, _ in children:
            with os.fdopen(out_r) as out:
                assert out.readline() == "ready\n"
        # Killed while its control socket is open: closed first, the template may end by
        # itself (exit 0) before the signal lands (seen under load).
        template.kill()
    finally:
        control.close()
    assert template.wait(timeout=60) == -signal.SIGKILL

    async def end_them() -> list[int]:
        handles = [_ForkedChild(pid, pidfd, ("probe",), {}) for pid, pidfd, _, _ in children]
        (_, _, _, exits_78), (_, _, _, exits_3), _ = children
        exits_78.sendall(b"78\n")
        exits_3.sendall(b"3\n")
        assert handles[2].send_signal(signal.SIGKILL)
        codes = [await asyncio.wait_for(h.wait(), 60) for h in handles]
        for handle in handles:
            handle.close()
        return codes

    assert asyncio.run(end_them()) == [78, 3, -signal.SIGKILL]
    for pid, _, _, link in children:
        link.close()
        assert not psutil.pid_exists(pid), "reaped, not left a zombie"


def test_crash_of_a_wallet_whose_template_died_is_counted_and_restarted(
        system: System) -> None:
    """A wallet forked by its template fails at start (exit 75: its wallet file stays
    locked past SQLite's 5 s busy timeout) after that template was SIGKILLed: the daemon
    sees exit code 75, not a guess, restarts it (counted) and reaps it."""
    assert system.rpc("createwallet", "w").strip()
    wallet_file = system.datadir / "wallet" / "wallets" / "w" / "wallet.sqlite"
    template = _template_of(system, "wallet")
    old = system.component("wallet")["pid"]
    restarts = system.component("wallet")["restarts"]
    lock = sqlite3.connect(wallet_file, timeout=60, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")  # the next wallet's start waits on this write lock
        system.log.mark()
        os.kill(old, signal.SIGKILL)
        spawned = system.log.wait_for(lambda e: e.get("event") == "component.spawned"
                                      and e.get("component") == "wallet")
        child = spawned["pid"]
        os.kill(template.pid, signal.SIGKILL)  # its child is on its own from the clone on
        exited = system.log.wait_for(lambda e: e.get("event") == "component.exited"
                                     and e.get("pid") == child, timeout=120)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert exited["exit_code"] == 75, exited
    system.wait_running("wallet", not_pid=child, timeout=120)
    comp = system.component("wallet")
    assert comp["restarts"] == restarts + 2, comp  # the kill, then the failed start
    assert not psutil.pid_exists(child), "reaped by the daemon"
    assert system.rpc("getnewaddress", wallet="w").startswith("bcrt1")


def test_config_failure_of_a_wallet_whose_template_died_is_not_retried(
        system: System) -> None:
    """A wallet forked by its template, held at start (its first wallet file locked), then
    its template SIGKILLed, then released into a wallet directory it may not read: it
    exits 78 (EX_CONFIG) and the daemon marks it failed at once instead of retrying."""
    for name in ("a", "b"):
        assert system.rpc("createwallet", name).strip()
    wallets = system.datadir / "wallet" / "wallets"
    template = _template_of(system, "wallet")
    old = system.component("wallet")["pid"]
    restarts = system.component("wallet")["restarts"]
    mode = (wallets / "b").stat().st_mode & 0o7777
    lock = sqlite3.connect(wallets / "a" / "wallet.sqlite", timeout=60, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")  # the next start waits here (5 s at most)
        os.chmod(wallets / "b", 0)  # and then cannot look into b: EACCES, exit 78
        system.log.mark()
        os.kill(old, signal.SIGKILL)
        spawned = system.log.wait_for(lambda e: e.get("event") == "component.spawned"
                                      and e.get("component") == "wallet")
        child = spawned["pid"]
        pidfd = os.pidfd_open(template.pid)
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            assert select.select([pidfd], [], [], 60)[0], "the template did not die"
        finally:
            os.close(pidfd)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    try:
        exited = system.log.wait_for(lambda e: e.get("event") == "component.exited"
                                     and e.get("pid") == child, timeout=120)
        assert exited["exit_code"] == 78, exited
        system.log.wait_for(lambda e: e.get("event") == "component.state_changed"
                            and e.get("component") == "wallet" and e.get("new") == "failed")
        comp = system.component("wallet")
        assert comp["state"] == "failed" and comp["restarts"] == restarts + 1, comp
        assert not psutil.pid_exists(child), "reaped by the daemon"
    finally:
        os.chmod(wallets / "b", mode)
    system.cli("start", "wallet")
    system.wait_running("wallet", not_pid=child)
    assert system.rpc("getnewaddress", wallet="b").startswith("bcrt1")
