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
import socket
import subprocess
from pathlib import Path

import pytest

from bitcoin_supervisor.interfaces import SandboxError
from bitcoin_supervisor.sandbox import SandboxContext, apply, landlock_abi_version, load_policy

from .conftest import NOBODY, Datadirs, run, run_many, start

SIGSYS = -signal.SIGSYS
SANDBOX_DIR = Path(apply.__code__.co_filename).parent  # visible read-only in every view
FORBIDDEN = ["execve", "ptrace", "mount", "unshare", "fork", "inet"]


def _spec(dd: Datadirs, role: str, action: str, **extra: object) -> dict[str, object]:
    return {"role": role, "datadirs": dd.as_spec(), "action": action, **extra}


def test_kernel_has_the_features_the_policies_need() -> None:
    assert landlock_abi_version() >= 6, "Landlock ABI >= 6 (TCP ports, signal scope)"


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
def test_wallet_forbidden_syscalls_kill_with_sigsys(as_user: int | None, datadirs: Datadirs,
                                                    nobody_datadirs: Datadirs) -> None:
    dd = nobody_datadirs if as_user else datadirs
    outs = run_many("probe.py", [_spec(dd, "wallet", a) for a in FORBIDDEN], user=as_user)
    assert {a: o.returncode for a, o in zip(FORBIDDEN, outs, strict=True)} == {
        a: SIGSYS for a in FORBIDDEN}


@pytest.mark.parametrize("as_user", [None, NOBODY], ids=["root", "unprivileged"])
def test_wallet_workload_survives_killing_default(as_user: int | None, datadirs: Datadirs,
                                                  nobody_datadirs: Datadirs) -> None:
    dd = nobody_datadirs if as_user else datadirs
    out = run("probe.py", _spec(dd, "wallet", "workload"), user=as_user)
    assert out.returncode == 0, out.stderr
    assert out.result == {"rows": 200, "thread": [499500], "sigterm": [signal.SIGTERM],
                          "executor": 7}
    assert (dd.base / "wallet" / "wallet.sqlite").stat().st_size > 0


def test_wallet_cannot_read_node_datadir_or_write_outside_its_own(
        datadirs: Datadirs) -> None:
    spec = datadirs.as_spec()
    node, wallet = spec["node"], spec["wallet"]
    reads, writes = run_many("probe.py", [
        _spec(datadirs, "wallet", "read", paths=[
            f"{node}/blocks/blk00000.dat", f"{node}/peers.dat", "/etc/passwd",
            "/proc/1/environ"]),
        _spec(datadirs, "wallet", "write", paths=[
            f"{wallet}/ok.txt", "/x", "/usr/x", f"{SANDBOX_DIR}/x", f"{node}/x"]),
    ])
    assert reads.returncode == 0, reads.stderr
    assert reads.result == {f"{node}/blocks/blk00000.dat": "ENOENT",
                            f"{node}/peers.dat": "ENOENT", "/etc/passwd": "ENOENT",
                            "/proc/1/environ": "ok"}
    assert writes.returncode == 0, writes.stderr
    assert isinstance(writes.result, dict)
    assert writes.result.pop(f"{wallet}/ok.txt") == "ok"
    assert writes.result[f"{node}/x"] == "ENOENT"
    assert all(v in ("EROFS", "EACCES", "ENOENT") for v in writes.result.values())
    assert (datadirs.base / "node").exists() and not (datadirs.base / "node" / "x").exists()


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


def test_wallet_cannot_signal_outside_its_namespace(datadirs: Datadirs) -> None:
    out = run("probe.py", _spec(datadirs, "wallet", "kill_outside", pid=1))
    assert out.returncode == 0, out.stderr
    assert out.result == {"2": "ESRCH", "300": "ESRCH", "1": "ok"}


def test_index_reads_node_blocks_but_cannot_change_them(datadirs: Datadirs) -> None:
    spec = datadirs.as_spec()
    node, wallet = spec["node"], spec["wallet"]
    reads, writes = run_many("probe.py", [
        _spec(datadirs, "index", "read", paths=[
            f"{node}/blocks/blk00000.dat", f"{node}/peers.dat", f"{wallet}/x"]),
        _spec(datadirs, "index", "write", paths=[
            f"{node}/blocks/blk00000.dat", f"{spec['index']}/txindex"]),
    ])
    assert reads.result == {f"{node}/blocks/blk00000.dat": "ok",
                            f"{node}/peers.dat": "ENOENT", f"{wallet}/x": "ENOENT"}
    assert writes.result == {f"{node}/blocks/blk00000.dat": "EROFS",
                             f"{spec['index']}/txindex": "ok"}
    assert (datadirs.base / "node/blocks/blk00000.dat").read_bytes() == b"node-secret-block"


def test_node_keeps_host_network_but_only_its_ports(datadirs: Datadirs) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        rpcport = free.getsockname()[1]
    out = run("probe.py", _spec(datadirs, "node", "bind", options={"rpcport": rpcport},
                                ports=[rpcport, rpcport + 1]))
    assert out.returncode == 0, out.stderr
    assert out.result == {str(rpcport): "ok", str(rpcport + 1): "EACCES"}
    forbidden = run_many("probe.py", [_spec(datadirs, "node", a)
                                      for a in ("execve", "ptrace", "unshare")])
    assert [o.returncode for o in forbidden] == [SIGSYS] * 3


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", proc.stderr


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
