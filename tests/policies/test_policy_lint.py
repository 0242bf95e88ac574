"""The dangerous-syscall lint: a role may let a syscall from the ``dangerous`` list of
syscalls.toml through only with a written ``[seccomp.justification]``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bitcoin_supervisor.interfaces import PolicyError
from bitcoin_supervisor.sandbox import (
    POLICY_DIR,
    dangerous_syscalls,
    load_policy,
    unjustified_syscalls,
)

DATADIRS = {"node": Path("/srv/node"), "wallet": Path("/srv/wallet"),
            "index": Path("/srv/index")}
# What the list must hold at the least (the list); more is fine.
REQUIRED = {
    "execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev", "mount",
    "umount2", "pivot_root", "unshare", "setns", "bpf", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "userfaultfd", "keyctl", "add_key", "request_key",
    "perf_event_open", "kexec_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "setuid", "setgid", "setreuid", "setregid", "setresuid",
    "setresgid", "capset", "chroot", "open_by_handle_at", "name_to_handle_at", "clone3",
    "fanotify_init",
}


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    for name in ("node", "wallet", "index", "syscalls"):
        shutil.copy(POLICY_DIR / f"{name}.toml", tmp_path / f"{name}.toml")
    return tmp_path


def _edit(path: Path, old: str, new: str) -> int:
    """Replace ``old`` once; return the 1-based line where ``new`` starts."""
    text = path.read_text()
    assert text.count(old) == 1
    text = text.replace(old, new, 1)
    path.write_text(text)
    return text[:text.index(new)].count("\n") + 1


def test_the_dangerous_list_is_data_in_syscalls_toml() -> None:
    assert REQUIRED <= dangerous_syscalls()


@pytest.mark.parametrize("role", ["node", "wallet", "index"])
def test_every_dangerous_syscall_a_role_allows_is_justified(role: str) -> None:
    policy = load_policy(role, datadirs=DATADIRS)
    assert unjustified_syscalls(policy, dangerous_syscalls()) == (), (
        f"{role}: add a [seccomp.justification] line per syscall, or stop allowing it")
    # A justification for something not allowed is stale: it would hide a later change.
    allowed = policy.seccomp.allow | {r.syscall for r in policy.seccomp.rules}
    assert set(policy.seccomp.justification) <= allowed


def test_errno_answer_for_clone3_is_not_an_allowance() -> None:
    policy = load_policy("wallet", datadirs=DATADIRS)
    assert "clone3" in policy.seccomp.errno and "clone3" in dangerous_syscalls()
    assert "clone3" not in unjustified_syscalls(policy, dangerous_syscalls())


def test_ptrace_without_a_justification_is_reported(policy_dir: Path) -> None:
    _edit(policy_dir / "wallet.toml", "allow = []", 'allow = ["ptrace"]')
    _edit(policy_dir / "index.toml", "[[seccomp.rule]]\n# Only AF_UNIX",
          '[[seccomp.rule]]\nsyscall = "process_vm_readv"\n\n[[seccomp.rule]]\n# Only AF_UNIX')
    dangerous = dangerous_syscalls(policy_dir)
    wallet = load_policy("wallet", datadirs=DATADIRS, policy_dir=policy_dir)
    index = load_policy("index", datadirs=DATADIRS, policy_dir=policy_dir)
    assert unjustified_syscalls(wallet, dangerous) == ("ptrace",)
    assert unjustified_syscalls(index, dangerous) == ("process_vm_readv",)


def test_a_justification_silences_the_lint(policy_dir: Path) -> None:
    path = policy_dir / "wallet.toml"
    _edit(path, "allow = []", 'allow = ["ptrace"]')
    _edit(path, "This role allows none of them.\n",
          'This role allows none of them.\nptrace = "debugging hook for the test"\n')
    policy = load_policy("wallet", datadirs=DATADIRS, policy_dir=policy_dir)
    assert policy.seccomp.justification == {"ptrace": "debugging hook for the test"}
    assert unjustified_syscalls(policy, dangerous_syscalls(policy_dir)) == ()


def test_a_permissive_default_action_lets_every_dangerous_syscall_through(
        policy_dir: Path) -> None:
    _edit(policy_dir / "wallet.toml", 'default_action = "kill_process"',
          'default_action = "allow"')
    policy = load_policy("wallet", datadirs=DATADIRS, policy_dir=policy_dir)
    found = unjustified_syscalls(policy, dangerous_syscalls(policy_dir))
    assert {"ptrace", "execve", "mount"} <= set(found)
    assert "clone3" not in found  # still answered with ENOSYS


@pytest.mark.parametrize(("text", "message"), [
    ('ptracee = "typo"', "justification for unknown syscall 'ptracee'"),
    ('ptrace = ""', "justification for 'ptrace' must be a non-empty string"),
    ("ptrace = 1", "justification for 'ptrace' must be a non-empty string"),
])
def test_bad_justification_points_at_its_line(policy_dir: Path, text: str,
                                              message: str) -> None:
    path = policy_dir / "wallet.toml"
    line = _edit(path, "This role allows none of them.\n",
                 f"This role allows none of them.\n{text}\n") + 1
    with pytest.raises(PolicyError) as caught:
        load_policy("wallet", datadirs=DATADIRS, policy_dir=policy_dir)
    assert message in caught.value.message
    assert (caught.value.path, caught.value.line) == (str(path), line)


def test_unknown_name_in_the_dangerous_list_points_into_syscalls_toml(
        policy_dir: Path) -> None:
    path = policy_dir / "syscalls.toml"
    line = _edit(path, '"ptrace", ', '"ptrase", ')
    with pytest.raises(PolicyError) as caught:
        dangerous_syscalls(policy_dir)
    assert "unknown syscall 'ptrase'" in caught.value.message
    assert (caught.value.path, caught.value.line) == (str(path), line)
