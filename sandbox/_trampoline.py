"""The sandbox trampoline: confine this process under a plan, then ``execve`` the program.

Confinement is the launcher's job (as in systemd, nsjail and bubblewrap): the supervisor
starts ``python -I -m bitcoin_supervisor.sandbox --plan-fd P --ipc-fd N -- PROGRAM ARGS``
and the program is confined before its first instruction, whether or not it cooperates.
``sandbox run`` enters the same ``enter`` in a forked child.

How "execve allowed once" is expressed: the filename is copied to a page mapped at a
random address, and the filter gains one rule allowing ``execve`` only when its first
argument (the filename pointer) equals that address, compared on all 64 bits. The
trampoline's own ``execve`` passes; the new program starts with a fresh address space and
the same filter, so its own ``execve`` calls are killed unless it happens to pass a
string at that very address. That is all seccomp can say (it sees pointers, never the
string): a program that learned or guessed the address could map it and exec again (each
wrong guess kills it). It stays confined anyway: the filter, Landlock, the namespaces and
``no_new_privs`` are inherited by anything it executes, and no_new_privs means an exec can
never gain privilege (setuid bits and file capabilities are ignored).
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import SandboxError, SupervisorError

from ._cgroup_join import join_cgroup_fds
from ._lifetime import bind_to_parent
from ._namespaces import close_fds
from ._plan import LaunchPlan, allow_entry_execve, read_plan_fd
from ._policy import Policy
from ._seccomp import SeccompFilter
from ._steps import SandboxContext, apply

__all__ = ["EXIT_CANNOT_EXECUTE", "EXIT_NOT_FOUND", "EXIT_SANDBOX_FAILED", "confine", "enter",
           "main"]

# The conventions of env(1), chroot(1) and podman: the runner itself failed / the program
# exists but cannot be executed / there is no such program.
EXIT_SANDBOX_FAILED = 125
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.execve.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
_PAGE = os.sysconf("SC_PAGE_SIZE")
_PROT_READ, _PROT_WRITE = 1, 2
_MAP_PRIVATE, _MAP_ANONYMOUS, _MAP_FIXED_NOREPLACE = 0x02, 0x20, 0x100000
# Below 2**46 the address is valid on every 64-bit layout Linux uses (47/48-bit VAs).
_ADDR_LOW, _ADDR_HIGH = 1 << 40, 1 << 46
_FULL64 = (1 << 64) - 1
_PREFIX = "bitcoin-supervisor sandbox"


def _pin_filename(filename: bytes) -> int:
    """Copy ``filename`` (NUL-terminated) to a read-only page at a random address."""
    size = (len(filename) // _PAGE + 1) * _PAGE
    for _ in range(64):
        # os.urandom, not secrets: importing secrets pulls in hmac/_hashlib (~20 ms a
        # spawn); modulo bias over a 2**46 range is irrelevant to guessing one page.
        offset = int.from_bytes(os.urandom(8), "little") % (_ADDR_HIGH - _ADDR_LOW)
        want = (_ADDR_LOW + offset) & ~(_PAGE - 1)
        got = _libc.mmap(want, size, _PROT_READ | _PROT_WRITE,
                         _MAP_PRIVATE | _MAP_ANONYMOUS | _MAP_FIXED_NOREPLACE, -1, 0)
        if got == want:
            ctypes.memmove(got, filename + b"\0", len(filename) + 1)
            if _libc.mprotect(got, size, _PROT_READ) != 0:
                raise SandboxError("mprotect of the pinned filename failed")
            return want
        if got not in (None, _FULL64):  # an old kernel took the address as a hint
            _libc.munmap(got, size)
    raise SandboxError("could not map the execve filename at a random address")


def _c_strings(items: Sequence[bytes]) -> ctypes.Array[ctypes.c_char_p]:
    array = (ctypes.c_char_p * (len(items) + 1))()
    array[:-1] = list(items)
    array[-1] = None
    return array


def confine(plan: LaunchPlan, policy: Policy | None, *, ipc_fd: int | None,
            keep: tuple[int, ...],
            filters: tuple[SeccompFilter, SeccompFilter | None] | None = None) -> None:
    """Confine the calling process under ``policy`` (``plan.policy``, possibly opened for
    an entry execve): with no policy, only join the cgroup, bind the lifetime to
    ``plan.parent_pid`` and close every fd but stdio and ``keep``. The one confinement
    path of both the trampoline and the fork server's children. ``filters``: the role's
    and the waiter's filters already compiled (a fork server's). Raises SandboxError or
    OSError at the first failing step (the caller must exit: fail closed). Returns in
    the process that goes on to run the program (PID 1 of its pid namespace, if any)."""
    if policy is None:
        join_cgroup_fds(plan.cgroup_fds)
        bind_to_parent(plan.parent_pid)
        close_fds({0, 1, 2, *keep})
        return
    apply(policy, SandboxContext(ipc_fd=ipc_fd, pass_fds=keep, name=plan.name,
                                 parent_pid=plan.parent_pid, waiter=plan.waiter,
                                 cgroup_fds=plan.cgroup_fds, filters=filters))


def enter(plan: LaunchPlan, argv: Sequence[str], *, ipc_fd: int | None,
          pass_fds: tuple[int, ...] = (), hello: int | None = None) -> NoReturn:
    """Confine the calling process under ``plan`` and execute ``plan.executable`` with
    ``argv`` and the current environment. Never returns: on any failure it writes one
    line to stderr and exits 125 (sandbox), 126 (cannot execute) or 127 (not found).

    Single-threaded callers only (it forks into the pid namespace: the caller's process
    stays behind as the confined waiter). ``ipc_fd`` and ``pass_fds`` survive; ``hello``
    (also kept until then) gets one byte once confinement is complete, right before exec.
    """
    code = EXIT_SANDBOX_FAILED
    try:
        # Python ignores SIGPIPE and SIGXFSZ; an ignored signal stays ignored across exec.
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        keep = tuple(fd for fd in (ipc_fd, hello, *pass_fds) if fd is not None)
        address = _pin_filename(os.fsencode(plan.executable))
        policy = (None if plan.policy is None
                  else allow_entry_execve(plan.policy, address, plan.exec_chain))
        confine(plan, policy, ipc_fd=ipc_fd, keep=keep)
        if hello is not None:
            os.write(hello, b"!")
            os.close(hello)
        os.chdir(plan.cwd)
        args = _c_strings([os.fsencode(a) for a in argv])
        envp = _c_strings([os.fsencode(f"{k}={v}") for k, v in os.environ.items()])
        _libc.execve(address, ctypes.addressof(args), ctypes.addressof(envp))
        err = ctypes.get_errno()
        code = EXIT_NOT_FOUND if err == errno.ENOENT else EXIT_CANNOT_EXECUTE
        os.write(2, f"{_PREFIX}: {plan.executable}: {os.strerror(err)}\n".encode())
    except (SupervisorError, OSError) as exc:
        os.write(2, f"{_PREFIX}: {plan.name or plan.executable}: {exc}\n".encode())
    except BaseException:  # the boundary: this process must never return to its caller
        traceback.print_exc()
    finally:
        os._exit(code)


def main(args: Sequence[str] | None = None) -> NoReturn:
    """``python -m bitcoin_supervisor.sandbox --plan-fd P [--ipc-fd N] -- PROGRAM ARGS``:
    read the plan from fd P, confine, execute. Never returns (exit codes as ``enter``)."""
    parser = argparse.ArgumentParser(
        prog="python -m bitcoin_supervisor.sandbox",
        description="Sandbox trampoline started by bitcoin-supervisor: applies the launch "
                    "plan read from --plan-fd, then executes PROGRAM (confined before its "
                    "first instruction). Not meant to be run by hand: use "
                    "`bitcoin-supervisor sandbox run`.")
    parser.add_argument("--plan-fd", type=int, required=True, metavar="P")
    parser.add_argument("--ipc-fd", type=int, metavar="N",
                        help="the inherited IPC socket, kept open")
    parser.add_argument("--keep-fd", type=int, action="append", default=[], metavar="K",
                        help="a further inherited descriptor the program keeps")
    parser.add_argument("program", nargs=argparse.REMAINDER)
    ns = parser.parse_args(args)
    argv = ns.program[1:] if ns.program[:1] == ["--"] else ns.program
    # Its log lines (sandbox.applied with per-step timings) go where a role's go: JSON on
    # stderr, which the supervisor drains and relays under the component's name.
    log.configure_light()
    try:
        if not argv:
            raise SandboxError("no program given")
        plan = read_plan_fd(ns.plan_fd)
        if Path(argv[0]) != plan.executable:
            raise SandboxError(f"program {argv[0]} is not the planned {plan.executable}")
    except SandboxError as exc:
        print(f"{_PREFIX}: {exc}", file=sys.stderr)
        sys.exit(EXIT_SANDBOX_FAILED)
    enter(plan, argv, ipc_fd=ns.ipc_fd, pass_fds=tuple(ns.keep_fd))
