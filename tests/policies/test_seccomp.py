"""Seccomp filters: golden PFC per role, and real children that the filter kills or
answers with an errno (each probe is its own process: a loaded filter cannot be undone)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from bitcoin_supervisor.sandbox import build_filter, load_policy

from .conftest import run, run_many

GOLDEN = Path(__file__).resolve().parent / "golden"
DATADIRS = {"node": Path("/srv/node"), "wallet": Path("/srv/wallet"),
            "index": Path("/srv/index")}
# Just enough for the probe's Python to run after the filter (not a role's real list).
BASE = ["read", "write", "close", "fstat", "newfstatat", "lseek", "mmap", "munmap",
        "mprotect", "brk", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "futex",
        "exit", "exit_group", "getpid", "gettid", "madvise", "set_robust_list", "rseq",
        "ioctl", "getrandom", "kill", "tgkill", "uname", "sigaltstack", "mremap",
        "clock_gettime", "set_tid_address", "sched_yield", "getcwd", "openat"]
CLONE_THREAD_ONLY = {"syscall": "clone", "action": "allow",
                     "args": [[0, 0x7E030080, 0x10000]]}


@pytest.mark.parametrize("role", ["node", "wallet", "index"])
def test_role_filter_matches_golden_pfc(role: str) -> None:
    text = build_filter(load_policy(role, datadirs=DATADIRS).seccomp).pfc()
    golden = GOLDEN / f"{role}.pfc"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text(), (
        f"the {role} filter changed; review the diff and rerun with UPDATE_GOLDEN=1")
    assert "action KILL_PROCESS;" in text and "ERRNO(38)" in text  # clone3 -> ENOSYS


def test_forbidden_syscall_kills_with_sigsys() -> None:
    out = run("seccomp_probe.py", {"default": "kill_process", "allow": BASE,
                                   "actions": ["uname", "getppid"]})
    assert out.returncode == -signal.SIGSYS


def test_errno_rule_returns_that_errno_and_process_lives() -> None:
    out = run("seccomp_probe.py", {"default": "kill_process", "allow": BASE,
                                   "errno": {"getppid": "EPERM"},
                                   "actions": ["getppid", "uname"]})
    assert out.returncode == 0, out.stderr
    assert out.result == {"getppid": "EPERM", "uname": "Linux"}


def test_clone3_enosys_keeps_python_threads_working() -> None:
    enosys, eperm = run_many("seccomp_probe.py", [
        {"default": "kill_process", "allow": BASE,
         "errno": {"clone3": "ENOSYS"}, "rules": [CLONE_THREAD_ONLY],
         "actions": ["clone3", "thread"]},
        {"default": "kill_process", "allow": BASE, "errno": {"clone3": "EPERM"},
         "rules": [CLONE_THREAD_ONLY], "actions": ["clone3", "thread"]},
    ])
    assert enosys.returncode == 0, enosys.stderr
    assert enosys.result == {"clone3": "ENOSYS", "thread": [42]}
    # EPERM makes glibc give up instead of falling back to clone: threads break (and the
    # error report itself then dies on the filter).
    assert eperm.returncode != 0 and eperm.result is None


def test_signal_handler_returns_through_rt_sigreturn() -> None:
    allowed, missing = run_many("seccomp_probe.py", [
        {"default": "kill_process", "allow": BASE, "actions": ["signal", "uname"]},
        {"default": "kill_process", "allow": [s for s in BASE if s != "rt_sigreturn"],
         "actions": ["signal", "uname"]},
    ])
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.result == {"signal": [signal.SIGUSR1], "uname": "Linux"}
    assert missing.returncode == -signal.SIGSYS  # the first handled signal kills


def test_masked_compare_catches_high_bits() -> None:
    # Deny TIOCSTI; a 64-bit EQ would let TIOCSTI | 1 << 32 through (the kernel
    # truncates the int argument), the masked 32-bit compare does not.
    out = run("seccomp_probe.py", {
        "default": "allow", "rules": [
            {"syscall": "ioctl", "action": "errno:EPERM", "args": [[1, 0xFFFFFFFF, 0x5412]]}],
        "actions": ["ioctl_tiocsti", "ioctl_tiocsti_high"]})
    assert out.returncode == 0, out.stderr
    assert out.result == {"ioctl_tiocsti": "EPERM", "ioctl_tiocsti_high": "EPERM"}
