"""Fork servers (issue 9): roles forked from their template are confined, verified and hold
only their own descriptors; a killed wallet comes back from it without leaving a zombie; a
dead template is restarted and a hung one is bypassed (cold start); children of one
template share no randomness and build their own capnp state."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from bitcoin_supervisor.sandbox import fork_wire, make_plan, plan_fd

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


def _template_of(waiter: int) -> psutil.Process:
    parent = psutil.Process(waiter).parent()
    assert parent is not None
    assert _TEMPLATE in parent.cmdline(), parent.cmdline()
    return parent


def _sockets(pid: int) -> set[str]:
    return {t for t in _fds(pid).values() if t.startswith("socket:")}


def test_forked_roles_are_confined_and_hold_only_their_own_fds(system: System) -> None:
    comps = {c["name"]: c for c in system.status()["components"]}
    host_net = os.readlink("/proc/self/ns/net")
    trees = {}
    for name, comp in comps.items():
        template = _template_of(comp["pid"])
        assert template.ppid() == system.process.pid, "templates are the daemon's children"
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
    template = _template_of(old)
    system.log.mark()
    os.kill(old, signal.SIGKILL)
    system.wait_running("wallet", not_pid=old)
    restored = system.log.wait_for(lambda e: e.get("event") == "component.restored"
                                   and e.get("component") == "wallet")
    assert restored["fork_server"] is True
    assert restored["total_ms"] > 0 and set(restored["steps_ms"]) >= {
        "exit_to_cgroup_killed", "spawn", "launched_to_init", "rebroker"}
    new = system.component("wallet")["pid"]
    assert _template_of(new).pid == template.pid
    assert not psutil.pid_exists(old) or psutil.Process(old).status() != "zombie"
    for child in template.children():
        assert child.status() != psutil.STATUS_ZOMBIE
    assert system.component("wallet")["confinement"] == "enforced"
    assert system.rpc("createwallet", "w").strip()


def test_dead_template_is_restarted_and_a_hung_one_is_bypassed(system: System) -> None:
    old = system.component("wallet")["pid"]
    template = _template_of(old)
    system.log.mark()
    os.kill(template.pid, signal.SIGKILL)
    system.log.wait_for(lambda e: e.get("event") == "fork_server.exited"
                        and "wallet" in e.get("entry", ""))
    system.log.wait_for(lambda e: e.get("event") == "fork_server.started"
                        and "wallet" in e.get("entry", "") and e.get("restarted") is True)
    # Its child lives on (its lifetime is its link to the supervisor) and still answers.
    assert system.component("wallet")["pid"] == old
    assert system.rpc("createwallet", "w").strip()
    system.log.mark()
    os.kill(old, signal.SIGKILL)
    system.wait_running("wallet", not_pid=old)
    wallet = system.component("wallet")["pid"]
    fresh = _template_of(wallet)
    assert fresh.pid != template.pid
    system.log.mark()
    # A stopped template cannot report its child's exit nor fork: the supervisor waits
    # for the status (SPAWN_TIMEOUT_S), kills the hung template and starts another. The
    # wallet comes back either cold (no template ready yet: logged) or from the
    # replacement, whichever is ready first; never from the stopped one.
    os.kill(fresh.pid, signal.SIGSTOP)
    os.kill(wallet, signal.SIGKILL)
    system.log.wait_for(lambda e: e.get("event") == "fork_server.started"
                        and "wallet" in e.get("entry", "") and e.get("restarted") is True,
                        timeout=90)
    system.wait_running("wallet", not_pid=wallet, timeout=90)
    comp = system.component("wallet")
    assert comp["confinement"] == "enforced"
    parent = psutil.Process(comp["pid"]).parent()
    assert parent is not None and parent.pid != fresh.pid
    fell_back = any(e.get("event") == "fork_server.fallback" and e.get("component") == "wallet"
                    for e in system.log.events)
    assert fell_back or _TEMPLATE in parent.cmdline(), (fell_back, parent.cmdline())
    assert not fresh.is_running() or fresh.status() == psutil.STATUS_ZOMBIE
    assert system.rpc("createwallet", "w2").strip()


def _spawn_probe(control: socket.socket, template: int, tmp_path: Path, ident: int,
                 exits: dict[int, int]) -> tuple[int, int, int, socket.socket]:
    plan = make_plan(None, name=f"probe{ident}", executable=Path(sys.executable),
                     cwd=tmp_path, parent_pid=template)
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
    while True:  # an earlier child may exit (and be reported) before this one is forked
        reply = fork_wire.receive(control)
        assert reply is not None
        if reply.op != "exited":
            break
        exits[reply.fields["pid"]] = os.waitstatus_to_exitcode(reply.fields["status"])
    assert reply.op == "spawned", reply
    return int(reply.fields["pid"]), reply.fds[0], out_r, ours


def test_children_of_one_template_share_no_randomness_nor_fds(tmp_path: Path) -> None:
    control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    # Not -I: the probe entry lives in this checkout's tests package (cwd on the path).
    template = subprocess.Popen(
        [sys.executable, "-m", _TEMPLATE, "--control-fd", str(theirs.fileno()),
         "--entry", "tests.integration._forkprobe:main", "--parent", str(os.getpid())],
        pass_fds=(theirs.fileno(),), cwd=REPO, stdin=subprocess.DEVNULL)
    theirs.close()
    try:
        ready = fork_wire.receive(control)
        assert ready is not None and ready.op == "ready", ready
        exits: dict[int, int] = {}
        children = [_spawn_probe(control, template.pid, tmp_path, i, exits) for i in (1, 2)]
        reports: list[dict[str, Any]] = []
        for pid, _pidfd, out_r, link in children:
            with os.fdopen(out_r) as out:
                reports.append(json.loads(out.readline()))
            link.close()
            assert reports[-1]["pid"] == pid
        while len(exits) < 2:
            message = fork_wire.receive(control)
            assert message is not None
            if message.op == "exited":
                exits[message.fields["pid"]] = os.waitstatus_to_exitcode(
                    message.fields["status"])
        assert exits == {children[0][0]: 0, children[1][0]: 0}
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
        assert not any(c.status() == psutil.STATUS_ZOMBIE
                       for c in psutil.Process(template.pid).children())
    finally:
        control.close()  # the template exits when the supervisor lets go
        assert template.wait(timeout=60) == 0
