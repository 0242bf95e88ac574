"""Each role's sandbox, applied to a real child process, holds where users rely on it.

Every probe runs the real policy from policies/ (the killing default action included);
a kernel feature that is missing makes these tests fail, never skip.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import subprocess
from pathlib import Path

import pytest

from bitcoin_supervisor.interfaces import SandboxError
from bitcoin_supervisor.sandbox import (
    MATRIX,
    OK,
    SIGSYS,
    SandboxContext,
    apply,
    landlock_abi_version,
    load_policy,
    run_probe_matrix,
)

from .conftest import NOBODY, Datadirs, run, run_many, start

# What the issue requires every role's matrix to pin down (an exact outcome each).
FORBIDDEN_EVERYWHERE = {
    "connect_leaked", "write_outside_datadir", "write_usr", "read_shadow", "list_root",
    "execve", "fork", "ptrace", "mount", "unshare", "setns", "bpf", "io_uring_setup",
    "userfaultfd", "keyctl", "perf_event_open", "kill_supervisor", "kill_outside_pid",
    "wx_mmap", "wx_mprotect", "open_setuid", "openat_setgid", "openat_setuid_high",
    "creat_setuid", "openat2"}
NEEDED_EVERYWHERE = {"write_fsync_datadir", "sqlite_datadir", "thread", "signal_self",
                     "open_plain"}


def _spec(dd: Datadirs, role: str, action: str, **extra: object) -> dict[str, object]:
    return {"role": role, "datadirs": dd.as_spec(), "action": action, **extra}


def test_kernel_has_the_features_the_policies_need() -> None:
    assert landlock_abi_version() >= 6, "Landlock ABI >= 6 (TCP ports, signal scope)"


def test_matrix_pins_an_exact_outcome_for_every_required_operation() -> None:
    for role, probes in MATRIX.items():
        expected = {p.name: p.expected for p in probes}
        assert FORBIDDEN_EVERYWHERE | NEEDED_EVERYWHERE <= set(expected), role
        assert all(expected[name] != OK for name in FORBIDDEN_EVERYWHERE), role
        assert all(expected[name] == OK for name in NEEDED_EVERYWHERE), role
        others = {"node", "wallet", "index"} - {role}
        assert {f"read_{other}_datadir" for other in others} <= set(expected), role
    assert {p.name: p.expected for p in MATRIX["wallet"]}["inet_socket"] == SIGSYS
    assert {p.name: p.expected for p in MATRIX["node"]}["bind_rpcport"] == OK


@pytest.mark.timeout(900)  # the whole matrix, like `policy test`: slow under load
def test_probe_matrix_holds_for_an_unprivileged_user() -> None:
    # `policy test` (tests/policies/test_policy_cli.py) runs the same matrix as root.
    results = run_probe_matrix(user=NOBODY)
    failed = [f"{r.role}/{r.probe}: expected {r.expected}, observed {r.observed} "
              f"{r.detail}" for r in results if not r.passed]
    assert not failed, "\n".join(failed)
    assert len(results) == sum(len(p) for p in MATRIX.values())


@pytest.mark.parametrize("as_user", [None, NOBODY], ids=["root", "unprivileged"])
def test_wallet_status_shows_every_wall(as_user: int | None, datadirs: Datadirs,
                                        nobody_datadirs: Datadirs) -> None:
    dd = nobody_datadirs if as_user else datadirs
    out = run("probe.py", _spec(dd, "wallet", "status"), user=as_user)
    assert out.returncode == 0, out.stderr
    assert isinstance(out.result, dict)
    status = out.result["status"]
    assert status["Seccomp"] == "2"
    assert status["NoNewPrivs"] == "1"
    assert status["CapEff"] == "0000000000000000"
    assert status["CapBnd"] == "0000000000000000"
    assert out.result["ifaces"] == ["lo"]  # a fresh network namespace
    assert out.result["hostname"] == "bitcoin-wallet"
    assert out.result["pid"] == 1  # PID 1 of its own pid namespace
    # stdio plus the descriptor listing /proc/self/fd itself: nothing leaked
    assert len(out.result["fds"]) == 4
    assert set(out.steps) >= {"unshare", "mount_view", "pivot_root", "landlock",
                              "capabilities", "seccomp_load"}
    assert list(out.steps)[-1] == "seccomp_load"


@pytest.mark.parametrize("as_user", [None, NOBODY], ids=["root", "unprivileged"])
def test_wallet_workload_survives_killing_default(as_user: int | None, datadirs: Datadirs,
                                                  nobody_datadirs: Datadirs) -> None:
    dd = nobody_datadirs if as_user else datadirs
    out = run("probe.py", _spec(dd, "wallet", "workload"), user=as_user)
    assert out.returncode == 0, out.stderr
    assert out.result == {"rows": 200, "thread": [499500], "sigterm": [signal.SIGTERM],
                          "executor": 7}
    assert (dd.base / "wallet" / "wallet.sqlite").stat().st_size > 0


def test_wallet_network_walls_behind_seccomp(datadirs: Datadirs) -> None:
    # Seccomp relaxed: Landlock refuses every TCP connect. Landlock off too: the empty
    # network namespace (lo down, no route) is the last wall.
    relax = ["socket", "ioctl", "connect"]
    landlock, netns = run_many("probe.py", [
        _spec(datadirs, "wallet", "network", relax=relax),
        _spec(datadirs, "wallet", "network", relax=relax, no_landlock=True)])
    assert landlock.returncode == 0, landlock.stderr
    assert landlock.result == {"lo_up": False, "1.1.1.1": "EACCES", "127.0.0.1": "EACCES"}
    assert netns.returncode == 0, netns.stderr
    assert netns.result == {"lo_up": False, "1.1.1.1": "ENETUNREACH",
                            "127.0.0.1": "ENETUNREACH"}


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    # Its stderr says why when it ended instead (the file object itself said nothing).
    assert line == "ready", (line, proc.stderr.read() if proc.stderr and not line else None)


def test_sigterm_to_the_spawned_pid_reaches_the_sandboxed_role(datadirs: Datadirs) -> None:
    proc = start("probe.py", _spec(datadirs, "wallet", "serve"))
    _wait_ready(proc)
    proc.send_signal(signal.SIGTERM)  # the supervisor only knows the outer pid
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["result"] == "terminated"


def test_killing_the_spawned_pid_kills_the_sandboxed_role(datadirs: Datadirs) -> None:
    proc = start("probe.py", _spec(datadirs, "wallet", "serve"))
    _wait_ready(proc)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(children) == 1
    inner = os.pidfd_open(int(children[0]))
    try:
        proc.kill()
        proc.wait(timeout=10)
        # pdeathsig: the inner process dies with its trampoline.
        assert select.select([inner], [], [], 10)[0] == [inner]
    finally:
        os.close(inner)


def test_root_without_an_outer_uid_is_refused(datadirs: Datadirs) -> None:
    policy = load_policy("wallet", datadirs={"wallet": datadirs.base / "wallet"})
    with pytest.raises(SandboxError, match="no \\[user\\] uid: refusing to run"):
        apply(dataclasses.replace(policy, uid=None), SandboxContext(ipc_fd=None))
