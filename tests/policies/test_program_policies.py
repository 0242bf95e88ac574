"""The shipped policies of foreign programs (policies/bitcoin-node.toml for a real Bitcoin
Core bitcoin-node, policies/mp-example.toml for libmultiprocess's examples): what they let
through, golden filters, and how a component names them. The real binaries run under them
in tests/integration/test_real_peers.py."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from bitcoin_supervisor.sandbox import (
    POLICIES,
    PROGRAM_POLICIES,
    ArgCompare,
    build_filter,
    dangerous_syscalls,
    load_policy,
    unjustified_syscalls,
)
from bitcoin_supervisor.supervisor import _config, _policyargs

from .test_policy_loader import NEVER

GOLDEN = Path(__file__).resolve().parent / "golden"
DATADIRS = {"node": Path("/srv/node"), "wallet": Path("/srv/wallet"),
            "index": Path("/srv/index"), "core": Path("/srv/core"), "calc": Path("/srv/calc")}
OWN = {"bitcoin-node": "core", "mp-example": "calc"}
_MODE_ARG = {"open": 2, "openat": 3, "creat": 1}
_PR_SET_NAME, _PR_GET_NAME = 15, 16
_EQ = 0xFFFFFFFF  # "eq" in a policy file: all 32 bits compared


def _load(policy: str, **options: object):  # type: ignore[no-untyped-def]
    return load_policy(policy, name=OWN[policy], datadirs=DATADIRS, options=options)


def test_every_place_that_names_policies_knows_the_program_policies() -> None:
    assert POLICIES == ("node", "wallet", "index", *PROGRAM_POLICIES)
    assert _policyargs.POLICIES == POLICIES
    assert _config.SANDBOX_CHOICES == (*POLICIES, "none")


@pytest.mark.parametrize("policy", PROGRAM_POLICIES)
def test_program_policy_kills_by_default_and_sees_only_its_own_datadir(policy: str) -> None:
    p = _load(policy)
    rules = p.seccomp
    assert rules.default_action == "kill_process"
    assert not NEVER & rules.allow
    assert rules.errno == {"clone3": errno.ENOSYS, "openat2": errno.ENOSYS}
    assert unjustified_syscalls(p, dangerous_syscalls()) == ()
    for syscall, index in _MODE_ARG.items():  # no setuid/setgid files
        assert [r.args for r in rules.rules if r.syscall == syscall] == [
            (ArgCompare(index, 0o6000, 0),)], syscall
    # prctl only to name threads: never PR_SET_SECCOMP, PR_SET_MM, PR_CAP_AMBIENT ...
    assert "prctl" not in rules.allow
    assert {r.args for r in rules.rules if r.syscall == "prctl"} == {
        (ArgCompare(0, _EQ, _PR_SET_NAME),), (ArgCompare(0, _EQ, _PR_GET_NAME),)}
    assert p.capabilities == () and p.uid not in (None, 0)
    assert p.uid not in {load_policy(r, datadirs=DATADIRS).uid for r in ("node", "wallet",
                                                                         "index")}
    assert p.filesystem.read_write == (DATADIRS[OWN[policy]],)
    # No Python, no package folders, no other component's datadir in its view.
    shown = [str(x) for x in (*p.filesystem.read_only, *p.filesystem.read_write)]
    assert not any(s.startswith("/srv/") and s != str(DATADIRS[OWN[policy]]) for s in shown)
    assert not any("python" in s or "bitcoin_supervisor" in s for s in shown), shown
    assert {"user", "mount", "pid", "ipc"} <= p.namespaces


def test_bitcoin_node_listens_only_on_the_ports_it_is_given() -> None:
    p = _load("bitcoin-node", rpcport=18500, port=18501)
    assert p.network == "host" and "net" not in p.namespaces
    assert p.landlock.tcp_bind == (18500, 18501)
    assert 18444 in p.landlock.tcp_connect
    assert _load("bitcoin-node").landlock.tcp_bind == ()  # no settings: no listener
    sockets = [r.args for r in p.seccomp.rules if r.syscall == "socket"]
    assert sockets == [
        (ArgCompare(0, _EQ, 1),),                               # AF_UNIX (-ipcbind)
        (ArgCompare(0, _EQ, 2), ArgCompare(1, 0xF, 1)),         # TCP over IPv4
        (ArgCompare(0, _EQ, 10), ArgCompare(1, 0xF, 1)),        # TCP over IPv6
        (ArgCompare(0, _EQ, 2), ArgCompare(1, 0xF, 2)),         # UDP (DNS, port mapping)
        (ArgCompare(0, _EQ, 10), ArgCompare(1, 0xF, 2)),
        (ArgCompare(0, _EQ, 16), ArgCompare(2, _EQ, 0)),       # NETLINK_ROUTE only
    ]
    assert {"bind", "listen", "accept4", "connect", "fsync", "fdatasync", "mlock",
            "munlock"} <= p.seccomp.allow
    # Only SCHED_BATCH (the block loader lowering its own priority), never SCHED_FIFO/RR.
    assert [r.args for r in p.seccomp.rules if r.syscall == "sched_setscheduler"] == [
        (ArgCompare(1, _EQ, 3),)]
    assert p.rlimits["memlock"] == (262144, 262144)


def test_mp_example_has_no_network() -> None:
    p = _load("mp-example")
    assert p.network == "none" and "net" in p.namespaces
    assert not {"bind", "listen", "connect", "accept4"} & p.seccomp.allow
    assert [r.args for r in p.seccomp.rules if r.syscall == "socket"] == [
        (ArgCompare(0, _EQ, 1),)]


@pytest.mark.parametrize("policy", PROGRAM_POLICIES)
def test_program_filter_matches_golden_pfc(policy: str) -> None:
    text = build_filter(_load(policy).seccomp).pfc()
    golden = GOLDEN / f"{policy}.pfc"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text(), (
        f"the {policy} filter changed; review the diff and rerun with UPDATE_GOLDEN=1")
