"""The per-role regression probe matrix: every operation a role must be refused (with
its exact outcome) or granted, each run in its own really sandboxed child process.

A probe that the filter kills takes its process with it, so each probe runs in a fresh
child: ``python3 -m bitcoin_supervisor.sandbox._probes ROLE PROBE --datadirs BASE``
applies the role's real policy, does one operation and prints one JSON line
(``{"probe": ..., "observed": "ok" | "ENAME"}``); a kill shows as death by SIGSYS.
``run_probe_matrix`` runs the whole table a few children at a time.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bitcoin_supervisor import log

from ._cgroups import remove_cgroups
from ._loader import load_policy
from ._probe_ops import OPS, ProbeContext
from ._steps import SandboxContext, apply
from ._templates import ROLES

__all__ = ["MATRIX", "OK", "SIGSYS", "Probe", "ProbeResult", "run_probe_matrix"]

_MODULE = "bitcoin_supervisor.sandbox._probes"
OK = "ok"
SIGSYS = "SIGSYS"
_S, _N, _W, _I = SIGSYS, "node", "wallet", "index"
_ALL_SIGSYS = {_N: _S, _W: _S, _I: _S}


@dataclass(frozen=True)
class Probe:
    """One operation and its exact expected outcome for one role: ``"ok"``, an errno
    name (``"ENOENT"``) or ``"SIGSYS"`` (the seccomp filter kills the process)."""

    name: str
    what: str
    expected: str


@dataclass(frozen=True)
class ProbeResult:
    """What one sandboxed probe child did; ``detail`` explains an unexpected end."""

    role: str
    probe: str
    what: str
    expected: str
    observed: str
    seconds: float
    detail: str = ""

    @property
    def passed(self) -> bool:
        """True when the observed outcome is exactly the expected one."""
        return self.observed == self.expected


# name, what it does, expected outcome per role (a role missing from the dict skips it).
_TABLE: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("inet_socket", "socket(AF_INET, SOCK_STREAM)", {_N: OK, _W: _S, _I: _S}),
    ("udp_socket", "socket(AF_INET, SOCK_DGRAM): UDP escapes Landlock's TCP rules",
     {_N: _S, _W: _S, _I: _S}),
    ("netlink_socket", "socket(AF_NETLINK, SOCK_RAW)", {_N: _S, _W: _S, _I: _S}),
    ("chmod_setuid", "chmod u+s a file in its datadir", {_N: _S, _W: _S, _I: _S}),
    ("chmod_plain", "chmod 0600 a file in its datadir", {_N: OK, _W: OK, _I: OK}),
    ("open_setuid", "open(O_CREAT, 04755) in its datadir", _ALL_SIGSYS),
    ("openat_setgid", "openat(O_CREAT, 02755) in its datadir (Python's os.open)",
     _ALL_SIGSYS),
    ("openat_setuid_high", "openat(O_CREAT, 1<<32 | 04755): high bits hide nothing",
     _ALL_SIGSYS),
    ("creat_setuid", "creat(06755) in its datadir", _ALL_SIGSYS),
    ("openat2", "openat2 (its mode is out of the filter's reach)",
     {_N: "ENOSYS", _W: "ENOSYS", _I: "ENOSYS"}),
    ("open_plain", "open(O_CREAT, 0640) in its datadir, then read it back",
     {_N: OK, _W: OK, _I: OK}),
    ("connect_leaked", "connect() a leaked host AF_INET socket to 127.0.0.1:9",
     {_N: "EACCES", _W: _S, _I: _S}),
    ("bind_rpcport", "bind 127.0.0.1:<rpcport> (the node's JSON-RPC)", {_N: OK}),
    ("bind_other_port", "bind 127.0.0.1:<rpcport+1>", {_N: "EACCES"}),
    ("write_outside_datadir", "create /probe (the view's root)", {
        _N: "EROFS", _W: "EROFS", _I: "EROFS"}),
    ("write_usr", "create /usr/probe", {_N: "EROFS", _W: "EROFS", _I: "EROFS"}),
    ("read_node_datadir", "read <node datadir>/peers.dat", {_W: "ENOENT", _I: "ENOENT"}),
    ("read_wallet_datadir", "read <wallet datadir>/wallet.dat",
     {_N: "ENOENT", _I: "ENOENT"}),
    ("read_index_datadir", "read <index datadir>/index.db", {_N: "ENOENT", _W: "ENOENT"}),
    ("read_node_blocks", "read <node datadir>/blocks/blk00000.dat", {_W: "ENOENT", _I: OK}),
    ("write_node_blocks", "write <node datadir>/blocks/blk00000.dat", {_I: "EROFS"}),
    ("read_shadow", "read /etc/shadow", {_N: "ENOENT", _W: "ENOENT", _I: "ENOENT"}),
    ("list_root", "list /root", {_N: "ENOENT", _W: "ENOENT", _I: "ENOENT"}),
    ("execve", "execve /usr/bin/true", _ALL_SIGSYS),
    ("fork", "fork (clone without CLONE_THREAD)", _ALL_SIGSYS),
    ("ptrace", "ptrace(PTRACE_TRACEME)", _ALL_SIGSYS),
    ("mount", "mount a tmpfs on /tmp", _ALL_SIGSYS),
    ("unshare", "unshare(CLONE_NEWUSER)", _ALL_SIGSYS),
    ("setns", "setns(0, 0)", _ALL_SIGSYS),
    ("bpf", "bpf(BPF_MAP_CREATE, NULL, 0)", _ALL_SIGSYS),
    ("io_uring_setup", "io_uring_setup(1, NULL)", _ALL_SIGSYS),
    ("userfaultfd", "userfaultfd(0)", _ALL_SIGSYS),
    ("keyctl", "keyctl(KEYCTL_GET_KEYRING_ID, session)", _ALL_SIGSYS),
    ("perf_event_open", "perf_event_open(NULL, 0, -1, -1, 0)", _ALL_SIGSYS),
    ("kill_supervisor", "kill(<supervisor's host pid>, 0)",
     {_N: "ESRCH", _W: "ESRCH", _I: "ESRCH"}),
    ("kill_outside_pid", "kill(<same-uid pid outside the sandbox>, 0)",
     {_N: "ESRCH", _W: "ESRCH", _I: "ESRCH"}),
    ("wx_mmap", "mmap PROT_WRITE|PROT_EXEC", {_N: "EACCES", _W: "EACCES", _I: "EACCES"}),
    ("wx_mprotect", "mprotect a written page to PROT_EXEC",
     {_N: "EACCES", _W: "EACCES", _I: "EACCES"}),
    ("write_fsync_datadir", "write + fsync a file in its datadir", {_N: OK, _W: OK, _I: OK}),
    ("sqlite_datadir", "SQLite WAL commit in its datadir", {_N: OK, _W: OK, _I: OK}),
    ("thread", "start and join a thread", {_N: OK, _W: OK, _I: OK}),
    ("signal_self", "SIGUSR1 to itself, handled", {_N: OK, _W: OK, _I: OK}),
)

MATRIX: Mapping[str, tuple[Probe, ...]] = {
    role: tuple(Probe(name, what, expected[role]) for name, what, expected in _TABLE
                if role in expected)
    for role in ROLES
}


def run_probe_matrix(roles: Sequence[str] | None = None, *, parallel: int = 4,
                     user: int | None = None,
                     on_result: Callable[[ProbeResult], None] | None = None,
                     ) -> list[ProbeResult]:
    """Run every probe of ``roles`` (default: all) in its own sandboxed child and return
    the results in table order.

    Blocks until all are done, ``parallel`` children at a time. Fake datadirs for every
    component (with files to find) are made in a fresh temporary directory per probe and
    removed afterwards. ``user`` runs the children as that uid (unprivileged path);
    ``on_result`` is called as each probe finishes. Raises KeyError for an unknown role.
    """
    chosen = list(roles) if roles is not None else list(ROLES)
    jobs = [(role, probe) for role in chosen for probe in MATRIX[role]]
    rpcport = _free_port()
    with tempfile.TemporaryDirectory(prefix="policy-test-") as tmp:
        base = Path(tmp)
        if user is not None:
            os.chmod(base, 0o755)

        def one(index: int, role: str, probe: Probe) -> ProbeResult:
            result = _spawn(role, probe, _fake_datadirs(base / str(index), user),
                            rpcport, user)
            if on_result is not None:
                on_result(result)
            return result

        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            futures = [pool.submit(one, i, role, probe)
                       for i, (role, probe) in enumerate(jobs)]
            return [f.result() for f in futures]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fake_datadirs(base: Path, owner: int | None) -> Path:
    """Three component datadirs, each holding a file the others must not reach."""
    files = {"node/peers.dat": b"node-private", "node/blocks/blk00000.dat": b"node-block",
             "wallet/wallet.dat": b"wallet-keys", "index/index.db": b"index-data"}
    for rel, data in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(data)
    if owner is not None:
        for path in [base, *base.rglob("*")]:
            os.chown(path, owner, owner)
    return base


def _spawn(role: str, probe: Probe, base: Path, rpcport: int,
           user: int | None) -> ProbeResult:
    # -W: this module is imported by the package before runpy executes it as __main__.
    cmd = [sys.executable, "-W", "ignore::RuntimeWarning:runpy", "-m", _MODULE,
           role, probe.name, "--datadirs", str(base), "--rpcport", str(rpcport)]
    start = time.monotonic()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          user=user, group=user,
                          extra_groups=[] if user is not None else None) as child:
        try:
            out, err = child.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            remove_cgroups(role, child.pid)
            return ProbeResult(role, probe.name, probe.what, probe.expected, "timeout",
                               time.monotonic() - start, "no result within 30 s")
    remove_cgroups(role, child.pid)  # the probe joined <role>-<its pid>.<pid ns> (apply's name)
    observed, detail = _observed(subprocess.CompletedProcess(cmd, child.returncode, out, err))
    return ProbeResult(role, probe.name, probe.what, probe.expected, observed,
                       time.monotonic() - start, detail)


def _observed(proc: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    if proc.returncode < 0:
        return signal.Signals(-proc.returncode).name, ""
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        data = json.loads(lines[-1])
        return str(data["observed"]), str(data.get("detail", ""))
    tail = (proc.stderr.strip().splitlines() or [""])[-1]
    return f"exit {proc.returncode}", tail


assert set(OPS) == {name for name, _, _ in _TABLE}


def probe_main(argv: Sequence[str] | None = None) -> int:
    """Entry of the probe child: sandbox this process as ROLE, do PROBE, print one JSON
    line on stdout and return 0 — or die by the filter. Exit 2 for bad arguments."""
    parser = argparse.ArgumentParser(prog="python3 -m bitcoin_supervisor.sandbox._probes")
    parser.add_argument("role", choices=ROLES)
    parser.add_argument("probe", choices=sorted(OPS))
    parser.add_argument("--datadirs", type=Path, required=True,
                        help="folder holding node/, wallet/ and index/")
    parser.add_argument("--rpcport", type=int, default=18443)
    args = parser.parse_args(argv)
    log.configure(json=True)  # stderr; stdout carries the one result line
    datadirs = {role: args.datadirs / role for role in ROLES}
    leaked = None
    if args.probe == "connect_leaked":
        # Made on the host before any wall goes up, as a descriptor leak would be.
        leaked = socket.socket(socket.AF_INET, socket.SOCK_STREAM).detach()
    ctx = ProbeContext(args.role, datadirs, args.rpcport, supervisor_pid=os.getppid(),
               outside_pid=os.getpid(), leaked=leaked)
    # Components are named by role here, as in the bundled config: the node provides
    # the chain that wallet and index consume.
    policy = load_policy(args.role, datadirs=datadirs, options={"rpcport": args.rpcport},
                         providers={} if args.role == "node" else {"chain": "node"})
    apply(policy, SandboxContext(ipc_fd=None,
                                 pass_fds=() if leaked is None else (leaked,)))
    # After apply this is the inner process; the pid taken above is its trampoline,
    # a process outside the sandbox with the same uid.
    observed, detail = OK, ""
    try:
        OPS[args.probe](ctx)
    except OSError as exc:
        observed = errno.errorcode.get(exc.errno or 0, f"errno {exc.errno}")
        detail = str(exc)
    print(json.dumps({"probe": args.probe, "observed": observed, "detail": detail}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(probe_main())
