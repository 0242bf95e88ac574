"""load_policy: the shipped policies say what the issue asks, and bad input points at
the offending file:line."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest

from bitcoin_supervisor.interfaces import ConfigError, PolicyError
from bitcoin_supervisor.sandbox import POLICY_DIR, ArgCompare, load_policy

DATADIRS = {"node": Path("/srv/node"), "wallet": Path("/srv/wallet"),
            "index": Path("/srv/index")}
NEVER = {"execve", "execveat", "ptrace", "mount", "umount2", "pivot_root", "unshare",
         "setns", "bpf", "io_uring_setup", "io_uring_enter", "userfaultfd", "keyctl",
         "add_key", "perf_event_open", "setuid", "setresuid", "capset", "seccomp",
         "process_vm_readv", "pidfd_send_signal", "fork", "vfork", "open_tree",
         "move_mount", "fsopen", "mount_setattr", "clone3", "kexec_load", "init_module"}


_MODE_ARG = {"open": 2, "openat": 3, "creat": 1}


@pytest.mark.parametrize("role", ["node", "wallet", "index"])
def test_no_role_creates_setuid_or_setgid_files(role: str) -> None:
    """open/openat/creat pass only by a rule masking the mode's setuid/setgid bits (no
    unconditional allow: that would bypass the chmod rules); openat2's mode is out of
    the filter's reach, so it answers ENOSYS."""
    rules = load_policy(role, datadirs=DATADIRS).seccomp
    assert not set(_MODE_ARG) & rules.allow and "openat2" not in rules.allow
    for syscall, index in _MODE_ARG.items():
        guards = [r.args for r in rules.rules if r.syscall == syscall]
        assert guards == [(ArgCompare(index, 0o6000, 0),)], syscall


@pytest.mark.parametrize("role", ["node", "wallet", "index"])
def test_every_role_forbids_the_dangerous_syscalls(role: str) -> None:
    policy = load_policy(role, datadirs=DATADIRS)
    assert not NEVER & policy.seccomp.allow
    assert {r.syscall for r in policy.seccomp.rules} <= {"clone", "socket", "ioctl", "chmod",
                                                         "fchmod", "fchmodat", *_MODE_ARG}
    assert policy.seccomp.errno == {"clone3": errno.ENOSYS, "openat2": errno.ENOSYS}
    assert "rt_sigreturn" in policy.seccomp.allow
    assert policy.seccomp.default_action == "kill_process"
    assert policy.capabilities == ()
    assert policy.uid not in (None, 0) and policy.gid not in (None, 0)
    assert policy.filesystem.read_write == (DATADIRS[role],)
    assert {"user", "mount", "pid"} <= policy.namespaces


def test_roles_get_distinct_outer_uids() -> None:
    uids = {load_policy(r, datadirs=DATADIRS).uid for r in ("node", "wallet", "index")}
    assert len(uids) == 3


def test_wallet_sees_no_other_datadir_and_no_network() -> None:
    policy = load_policy("wallet", datadirs=DATADIRS)
    view = policy.filesystem
    every = view.read_only + view.read_write + view.tmpfs + view.devices
    assert not any(p.is_relative_to(DATADIRS["node"]) or p.is_relative_to(DATADIRS["index"])
                   for p in every)
    assert policy.network == "none" and "net" in policy.namespaces
    assert policy.landlock.tcp_bind == () and policy.landlock.tcp_connect == ()


def test_index_gets_its_chain_providers_blocks_read_only() -> None:
    policy = load_policy("index", datadirs=DATADIRS, providers={"chain": "node"})
    assert DATADIRS["node"] / "blocks" in policy.filesystem.read_only
    assert "net" in policy.namespaces
    # A second index bound to a second node sees that node's blocks and not the first's.
    datadirs = {**DATADIRS, "node2": Path("/srv/node2"), "index2": Path("/srv/index2")}
    policy = load_policy("index", name="index2", datadirs=datadirs,
                         providers={"chain": "node2"})
    assert Path("/srv/node2/blocks") in policy.filesystem.read_only
    assert Path("/srv/index2") in policy.filesystem.read_write
    assert not any(p.is_relative_to("/srv/node") for p in policy.filesystem.read_only)


def test_index_without_a_chain_provider_drops_the_blocks_bind() -> None:
    # (Compared as paths: a checkout such as /work/wt-corenode has "node" in its name.)
    node = DATADIRS["node"]
    policy = load_policy("index", datadirs={"index": DATADIRS["index"]},
                         providers={"chain": "node"})
    assert not any(p.is_relative_to(node) for p in policy.filesystem.read_only)
    policy = load_policy("index", datadirs=DATADIRS)  # it consumes no chain
    assert not any(p.is_relative_to(node) for p in policy.filesystem.read_only)


def test_node_keeps_host_network_and_its_rpc_port() -> None:
    policy = load_policy("node", datadirs=DATADIRS, options={"rpcport": 18500})
    assert policy.network == "host" and "net" not in policy.namespaces
    assert policy.landlock.tcp_bind == (18500,)
    # socket() only by argument rules: AF_UNIX, and TCP over IPv4/IPv6 (no UDP, netlink).
    assert "socket" not in policy.seccomp.allow
    domains = {r.args[0].value for r in policy.seccomp.rules if r.syscall == "socket"}
    assert domains == {1, 2, 10}


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    for name in ("node", "wallet", "index", "syscalls"):
        shutil.copy(POLICY_DIR / f"{name}.toml", tmp_path / f"{name}.toml")
    return tmp_path


def _edit(path: Path, old: str, new: str) -> int:
    """Replace ``old`` once; return the 1-based line where ``new`` now starts."""
    text = path.read_text()
    assert old in text
    text = text.replace(old, new, 1)
    path.write_text(text)
    return text[:text.index(new)].count("\n") + 1


@pytest.mark.parametrize(("file", "old", "new", "message"), [
    ("wallet", "[network]\nmode", "[network]\nmood = 1\nmode", "unknown key 'network.mood'"),
    ("wallet", '[[seccomp.rule]]\nsyscall = "ioctl"\nargs = [{ arg = 1, eq = 0x5450 }]',
     '[[seccomp.rule]]\nsyscall = "ioctl"\nargs = [{ arg = 9, eq = 0x5450 }]',
     "argument index 'arg' must be 0..5"),
    ("wallet", '[[seccomp.rule]]\nsyscall = "ioctl"\nargs = [{ arg = 1, eq = 0x5450 }]',
     '[[seccomp.rule]]\nsyscall = "ioctll"\nargs = [{ arg = 1, eq = 0x5450 }]',
     "unknown syscall 'ioctll'"),
    ("wallet", 'allow = []', 'allow = ["getpid", "no_such_call"]',
     "unknown syscall 'no_such_call'"),
    ("wallet", '"{datadir}"]', '"{datadri}"]', "unknown template {datadri}"),
    ("wallet", '"{datadir}"]', '"{datadir:Miner}"]', "bad component name 'Miner'"),
    ("wallet", '"{datadir}"]', '"{datadir:provider:}"]', "bad capability name ''"),
    ("wallet", 'clone3 = "ENOSYS"', 'clone3 = "ENOPE"', "unknown errno 'ENOPE'"),
    ("wallet", 'groups = ["@python-service"]', 'groups = ["@python-servic"]',
     "unknown syscall group '@python-servic'"),
    ("wallet", 'mode = "none"', 'mode = "bridge"', "unknown network mode 'bridge'"),
    ("wallet", "nofile = 1024", "nofile = -5", "bad rlimit nofile"),
    ("wallet", 'keep = []', 'keep = ["sys_admn"]', "unknown capability 'sys_admn'"),
    ("wallet", '"/usr",', '"usr",', "is not absolute"),
    ("wallet", "args = [{ arg = 0, eq = 1 }]", "args = [{ arg = 0, eq = 1, ne = 2 }]",
     "unknown key 'seccomp.rule.args.ne'"),
    ("wallet", 'default_action = "kill_process"', 'default_action = "explode"',
     "unknown action 'explode'"),
])
def test_bad_policy_points_at_file_and_line(policy_dir: Path, file: str, old: str,
                                            new: str, message: str) -> None:
    path = policy_dir / f"{file}.toml"
    first = _edit(path, old, new)
    # The changed line: the one of ``new`` that differs from ``old``.
    changed = next(i for i, (a, b) in enumerate(zip(old.split("\n") + [""],
                                                    new.split("\n"), strict=False)) if a != b)
    with pytest.raises(PolicyError) as caught:
        load_policy("wallet", datadirs=DATADIRS, policy_dir=policy_dir)
    err = caught.value
    assert isinstance(err, ConfigError)
    assert message in err.message
    assert err.path == str(path)
    assert err.line == first + changed
    assert str(err).startswith(f"{path}:{err.line}:")
    assert err.hint


def test_unknown_syscall_in_a_group_points_into_syscalls_toml(policy_dir: Path) -> None:
    path = policy_dir / "syscalls.toml"
    line = _edit(path, '"getrandom",', '"getrandomm",')
    with pytest.raises(PolicyError) as caught:
        load_policy("node", datadirs=DATADIRS, policy_dir=policy_dir)
    assert (caught.value.path, caught.value.line) == (str(path), line)
    assert "unknown syscall 'getrandomm'" in str(caught.value)


def test_toml_syntax_error_has_a_location(policy_dir: Path) -> None:
    line = _edit(policy_dir / "wallet.toml", "[network]", "[network")
    with pytest.raises(PolicyError) as caught:
        load_policy("wallet", datadirs=DATADIRS, policy_dir=policy_dir)
    assert caught.value.line == line


def test_missing_role_policy_names_the_known_ones() -> None:
    with pytest.raises(PolicyError, match="no sandbox policy for role 'gui'") as caught:
        load_policy("gui", datadirs={"gui": Path("/srv/gui")})
    assert caught.value.hint == ("roles with a policy: bitcoin-node, index, mp-example, node, "
                                 "wallet")
