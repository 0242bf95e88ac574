"""Leave the host's identity and namespaces: outer uid drop, unshare, uid/gid maps, the
fork that makes the component PID 1 of its own pid namespace, and closing stray fds."""

from __future__ import annotations

import contextlib
import os
import resource
import select
import signal
import sys
from collections.abc import Callable, Iterable

import prctl

from bitcoin_supervisor.interfaces import SandboxError

from ._libc import unshare

EXIT_CONFINE_FAILED = 78  # EX_CONFIG: the supervisor must not restart in a loop

__all__ = ["NS_FLAGS", "close_fds", "drop_to_outer_user", "fork_into_pid_namespace",
           "unshare_namespaces"]

NS_FLAGS = {"mount": 0x00020000, "cgroup": 0x02000000, "uts": 0x04000000,
            "ipc": 0x08000000, "user": 0x10000000, "pid": 0x20000000, "net": 0x40000000}
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
              signal.SIGUSR1, signal.SIGUSR2)


def drop_to_outer_user(uid: int, gid: int) -> None:
    """As root: become ``uid``/``gid`` for good (no supplementary groups), then make the
    process dumpable again so it may still write its own uid_map. Never maps to 0."""
    if uid == 0 or gid == 0:
        raise SandboxError("a role's outer uid/gid must not be 0")
    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        raise SandboxError(f"dropping to uid {uid}/gid {gid}: {exc.strerror}") from exc
    prctl.set_dumpable(True)


def unshare_namespaces(names: Iterable[str]) -> None:
    """unshare(2) the named namespaces; with a user namespace, map inner root (0) to the
    current outer uid/gid. Raises SandboxError (missing kernel support, no permission)."""
    names = set(names)
    uid, gid = os.geteuid(), os.getegid()
    flags = 0
    for name in names:
        flags |= NS_FLAGS[name]
    try:
        unshare(flags)
        if "user" in names:
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"0 {uid} 1")
            _write("/proc/self/gid_map", f"0 {gid} 1")
    except OSError as exc:
        raise SandboxError(f"creating namespaces {sorted(names)} failed: {exc}; "
                           "this kernel or container may forbid (user) namespaces") from exc


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(text)


def close_fds(keep: Iterable[int]) -> None:
    """Close every descriptor not in ``keep``: a leaked directory fd escapes pivot_root
    and a leaked socket keeps another network namespace reachable."""
    low = 0
    for fd in sorted(set(keep)) + [2**31 - 1]:
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1


def fork_into_pid_namespace(keep_fds: Iterable[int],
                            confine_waiter: Callable[[], None] | None = None) -> None:
    """Fork after unshare(CLONE_NEWPID). Returns only in the child (PID 1 of the new
    namespace, bound to die with its parent). The parent never returns: it closes every
    fd (so the supervisor sees EOF when the child dies), runs ``confine_waiter`` (the
    waiter is the pid the supervisor sees, so it gets a filter of its own), forwards
    termination signals, waits, and exits the way the child did (same code or signal).
    """
    alive_r, alive_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(alive_w)
        prctl.set_pdeathsig(signal.SIGKILL)
        # The parent may have died before pdeathsig was set: its pipe end tells.
        if select.select([alive_r], [], [], 0)[0]:
            os._exit(1)
        os.close(alive_r)
        return
    _trampoline(pid, alive_w, confine_waiter)


def _trampoline(child: int, keep: int, confine: Callable[[], None] | None) -> None:
    close_fds([2, keep])

    def forward(signum: int, _frame: object) -> None:
        # The child may be gone already; a traceback here would make the waiter open
        # source files, which its filter (rightly) kills it for.
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    if confine is not None:
        try:
            confine()
        except SandboxError:
            # Fail closed: without its own confinement the waiter must not linger.
            os.kill(child, signal.SIGKILL)
            os._exit(EXIT_CONFINE_FAILED)
    _, status = os.waitpid(child, 0)
    sys.stderr.flush()
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status))
        for forwarded in _FORWARDED:
            signal.signal(forwarded, signal.SIG_DFL)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            # Their disposition cannot be changed (EINVAL): an OOM kill is SIGKILL.
            signal.signal(sig, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # re-raising SIGSYS must not dump
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status))
