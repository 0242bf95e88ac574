"""One-shot confinement of any program under a role's policy (``sandbox run``), like
bubblewrap or nsjail's one-shot mode: a forked child enters the same trampoline the
supervisor launches components through (``_trampoline.enter``), which confines it and then
makes the single ``execve`` the filter lets through."""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from ._cgroup_owner import create_cgroup
from ._plan import LaunchPlan
from ._policy import Policy
from ._trampoline import enter
from ._violations import find_violation

__all__ = ["RunOutcome", "resolve_command", "run_sandboxed"]

_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
_FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


@dataclass(frozen=True)
class RunOutcome:
    """How the sandboxed command ended: ``status`` as a shell reports it (exit code, or
    128 + n after signal n, which is then in ``signal``); ``syscall`` names what the
    filter killed it for, when known."""

    status: int
    signal: int | None
    syscall: str | None = None


def resolve_command(name: str, policy: Policy, search_path: str) -> Path | None:
    """Return the file ``name`` names inside ``policy``'s view, or None.

    A name with a slash is taken as a path (relative to the current directory). A bare
    name is looked up in ``search_path`` (PATH syntax), skipping hits the view does not
    show (e.g. a pyenv shim under /root). The result is absolute but keeps symlinks (a
    venv's python finds its venv through its own path); both it and the file it resolves
    to are inside the view. Does not block; touches no process state.
    """
    candidates = ([name] if "/" in name
                  else [os.path.join(folder or ".", name) for folder in search_path.split(
                      os.pathsep)])
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK) and _visible(
                Path(candidate), policy):
            return Path(os.path.abspath(candidate))
    return None


def _visible(path: Path, policy: Policy) -> bool:
    view = policy.filesystem
    roots = [Path(os.path.abspath(p)) for p in view.read_only + view.read_write]
    roots += [Path(os.path.realpath(p)) for p in roots]
    return all(any(p.is_relative_to(root) for root in roots)
               for p in (Path(os.path.abspath(path)), Path(os.path.realpath(path))))


def run_sandboxed(plan: LaunchPlan, argv: Sequence[str], *,
                  keep_fds: tuple[int, ...] = ()) -> RunOutcome:
    """Run ``plan.executable`` with ``argv`` confined by ``plan`` and return how it ended.

    Blocks until the command exits. Forks: the child enters the trampoline (the whole
    policy, seccomp last, with the one entry ``execve`` allowed), changes to ``plan.cwd``
    (inside the view) and executes the command; stdio and ``keep_fds`` are inherited.
    The command is PID 1 of its own pid namespace, so it ignores signals it has no handler
    for; SIGTERM, SIGHUP (forwarded) and SIGINT (sent by the terminal) reach it, and a
    second one kills it. Exit status 125 means the sandbox could not be set up, 126 that
    the file could not be executed, 127 that it was not found in the view. After a
    seccomp kill ``syscall`` names the culprit when the kernel log is readable.
    """
    # Like the supervisor, the runner owns the cgroup: created and limited before the
    # fork, joined by the child through the inherited fds, killed and removed afterwards.
    cgroup = create_cgroup(plan.policy.cgroup if plan.policy else None, plan.name or "run",
                           source=plan.policy.source if plan.policy else plan.executable)
    if cgroup is not None:
        plan = replace(plan, cgroup_fds=tuple(cgroup.join_fds()))
    # The sandboxed process says hello over this pair before it execs; SO_PASSCRED makes
    # the kernel attach its pid translated into our pid namespace (for the audit log).
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.time()  # audit records older than this are about an earlier pid
    pid = os.fork()
    if pid == 0:
        ours.close()
        enter(plan, argv, ipc_fd=None, pass_fds=keep_fds + plan.cgroup_fds,
              hello=theirs.detach())
    theirs.close()
    if cgroup is not None:
        cgroup.close_fds()
    seen: list[int] = []
    previous = {sig: signal.signal(sig, _forwarder(pid, seen)) for sig in _FORWARDED}
    try:
        inner = _sandboxed_pid(ours)
        status = os.waitpid(pid, 0)[1]
    finally:
        if cgroup is not None:
            cgroup.kill()  # whatever the command left behind goes with it
            cgroup.remove()
        ours.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return RunOutcome(code, None)
    syscall = None
    if -code == signal.SIGSYS:
        syscall = find_violation([pid] + ([inner] if inner else []), started_at=started)
    return RunOutcome(128 - code, -code, syscall)


def _sandboxed_pid(sock: socket.socket) -> int | None:
    """The host pid of the sandboxed process, or None if it died before saying hello."""
    _, ancillary, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(_UCRED.size))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            return int(_UCRED.unpack(data[:_UCRED.size])[0])
    return None


def _forwarder(pid: int, seen: list[int]) -> Callable[[int, FrameType | None], None]:
    """A handler forwarding SIGTERM/SIGHUP once; any second signal kills the child."""
    def on_signal(signum: int, _frame: FrameType | None) -> None:
        seen.append(signum)
        if len(seen) > 1:
            os.kill(pid, signal.SIGKILL)
        elif signum != signal.SIGINT:  # the terminal sent SIGINT to the child already
            os.kill(pid, signum)
    return on_signal
