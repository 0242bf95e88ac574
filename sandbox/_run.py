"""One-shot confinement of any program under a role's policy (``sandbox run``), like
bubblewrap or nsjail's one-shot mode: the policy is applied to a forked child, which then
makes the single ``execve`` the filter lets through.

How "execve allowed once" is expressed: the filename is copied to a page mapped at a
random address, and the filter gains one rule allowing ``execve`` only when its first
argument (the filename pointer) equals that address, compared on all 64 bits. The
runner's own ``execve`` passes; the new program starts with a fresh address space and
the same filter, so its own ``execve`` calls are killed unless it happens to pass a
string at that very address. That is all seccomp can say (it sees pointers, never the
string): a program that learned or guessed the address could map it and exec again (each
wrong guess kills it). So it stays confined anyway: the filter, Landlock, the namespaces
and ``no_new_privs`` are inherited by anything it executes, and no_new_privs means an
exec can never gain privilege (setuid bits and file capabilities are ignored).
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import BinaryIO, NoReturn

from bitcoin_supervisor.interfaces import SandboxError, SupervisorError

from ._cgroups import remove_cgroups
from ._policy import ArgCompare, Policy, SyscallRule
from ._steps import SandboxContext, apply
from ._violations import find_violation

__all__ = ["EXIT_CANNOT_EXECUTE", "EXIT_NOT_FOUND", "EXIT_SANDBOX_FAILED", "RunOutcome",
           "allow_entry_execve", "exec_chain", "resolve_command", "run_sandboxed"]

# The conventions of env(1), chroot(1) and podman: the runner itself failed / the command
# exists but cannot be executed / there is no such command.
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
_PT_INTERP = 3
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
    show (e.g. a pyenv shim under /root). The result is fully resolved, so it is the same
    file inside the view. Does not block; touches no process state.
    """
    if "/" in name:
        path = Path(os.path.realpath(name))
        return path if _visible(path, policy) else None
    for folder in search_path.split(os.pathsep):
        candidate = Path(folder or ".") / name
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            resolved = Path(os.path.realpath(candidate))
            if _visible(resolved, policy):
                return resolved
    return None


def _visible(path: Path, policy: Policy) -> bool:
    view = policy.filesystem
    roots = [Path(os.path.realpath(p)) for p in view.read_only + view.read_write]
    return os.path.exists(path) and any(path.is_relative_to(root) for root in roots)


def exec_chain(executable: Path) -> tuple[Path, ...]:
    """Return the files ``execve(executable)`` makes the kernel open: the file itself,
    the interpreter of a ``#!`` script (recursively) and an ELF program's PT_INTERP (the
    dynamic loader), fully resolved. Reads file headers only; OSError if unreadable."""
    chain: list[Path] = []
    current: Path | None = Path(os.path.realpath(executable))
    while current is not None and current not in chain and len(chain) < 5:
        chain.append(current)
        with open(current, "rb") as fh:
            head = fh.read(256)
            if head.startswith(b"#!"):
                words = head[2:].split(b"\n", 1)[0].split()
                current = Path(os.path.realpath(os.fsdecode(words[0]))) if words else None
            elif head.startswith(b"\x7fELF"):
                interp = _elf_interpreter(fh, head)
                current = Path(os.path.realpath(interp)) if interp else None
            else:
                current = None
    return tuple(chain)


def _elf_interpreter(fh: BinaryIO, head: bytes) -> str | None:
    """PT_INTERP of an ELF file (32 or 64 bit, either byte order), or None (static)."""
    wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
    if wide:
        phoff, = struct.unpack_from(order + "Q", head, 0x20)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 0x36)
    else:
        phoff, = struct.unpack_from(order + "I", head, 0x1C)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 0x2A)
    fh.seek(phoff)
    table = fh.read(phentsize * phnum)
    for index in range(phnum):
        entry = table[index * phentsize:(index + 1) * phentsize]
        kind, = struct.unpack_from(order + "I", entry, 0)
        if kind != _PT_INTERP:
            continue
        # p_offset and p_filesz: at 8 and 32 in an Elf64_Phdr, at 4 and 16 in Elf32.
        field, at_offset, at_size = ("Q", 8, 32) if wide else ("I", 4, 16)
        offset, = struct.unpack_from(order + field, entry, at_offset)
        size, = struct.unpack_from(order + field, entry, at_size)
        fh.seek(offset)
        return os.fsdecode(fh.read(size).rstrip(b"\0"))
    return None


def allow_entry_execve(policy: Policy, filename_address: int,
                       executables: tuple[Path, ...]) -> Policy:
    """Return ``policy`` opened just enough for one entry ``execve``. Pure.

    Seccomp gains one rule: ``execve`` is allowed when its filename pointer equals
    ``filename_address`` (64-bit compare). Landlock lets ``execve`` open exactly
    ``executables`` (see ``exec_chain``); every other file stays non-executable.
    """
    view = replace(policy.filesystem,
                   executable=policy.filesystem.executable + executables)
    if "execve" in policy.seccomp.allow:
        return replace(policy, filesystem=view)
    rule = SyscallRule(syscall="execve", action="allow",
                       args=(ArgCompare(index=0, mask=_FULL64, value=filename_address),))
    return replace(policy, filesystem=view, seccomp=replace(
        policy.seccomp, rules=policy.seccomp.rules + (rule,)))


def _pin_filename(filename: bytes) -> int:
    """Copy ``filename`` (NUL-terminated) to a read-only page at a random address."""
    size = (len(filename) // _PAGE + 1) * _PAGE
    for _ in range(64):
        want = (_ADDR_LOW + secrets.randbelow(_ADDR_HIGH - _ADDR_LOW)) & ~(_PAGE - 1)
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


def run_sandboxed(policy: Policy, executable: Path, argv: Sequence[str], *,
                  cwd: Path, env: Mapping[str, str] | None = None) -> RunOutcome:
    """Run ``executable`` with ``argv`` under ``policy`` and return how it ended.

    Blocks until the command exits. Forks: the child applies the whole policy (as
    ``apply``, seccomp last, with the one entry ``execve`` allowed), changes to ``cwd``
    (inside the view) and executes the command; stdio is inherited. The command is PID 1
    of its own pid namespace, so it ignores signals it has no handler for; SIGTERM,
    SIGHUP (forwarded) and SIGINT (sent by the terminal) reach it, and a second one
    kills it. Exit status 125 means the sandbox could not be set up, 126 that the file
    could not be executed, 127 that it was not found in the view. After a seccomp kill
    ``syscall`` names the culprit when the kernel log is readable. Raises SandboxError
    (before anything runs) when the filename cannot be pinned; OSError when the
    executable's headers cannot be read.
    """
    address = _pin_filename(os.fsencode(executable))
    confined = allow_entry_execve(policy, address, exec_chain(executable))
    args = _c_strings([os.fsencode(a) for a in argv])
    environ = env if env is not None else os.environ
    envp = _c_strings([os.fsencode(f"{k}={v}") for k, v in environ.items()])
    # The sandboxed process says hello over this pair before it execs; SO_PASSCRED makes
    # the kernel attach its pid translated into our pid namespace (for the audit log).
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        ours.close()
        _child(confined, address, args, envp, cwd, argv[0], theirs.detach())
    theirs.close()
    seen: list[int] = []
    previous = {sig: signal.signal(sig, _forwarder(pid, seen)) for sig in _FORWARDED}
    try:
        inner = _sandboxed_pid(ours)
        status = os.waitpid(pid, 0)[1]
        remove_cgroups(policy.role, pid)
    finally:
        ours.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return RunOutcome(code, None)
    syscall = None
    if -code == signal.SIGSYS:
        syscall = find_violation([pid] + ([inner] if inner else []))
    return RunOutcome(128 - code, -code, syscall)


def _sandboxed_pid(sock: socket.socket) -> int | None:
    """The host pid of the sandboxed process, or None if it died before saying hello."""
    _, ancillary, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(_UCRED.size))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            return int(_UCRED.unpack(data[:_UCRED.size])[0])
    return None


def _child(policy: Policy, address: int, argv: ctypes.Array[ctypes.c_char_p],
           envp: ctypes.Array[ctypes.c_char_p], cwd: Path, name: str,
           hello: int) -> NoReturn:
    """The forked child: sandbox, say hello, then the one allowed execve. Never returns."""
    code = EXIT_SANDBOX_FAILED
    try:
        # Python ignores SIGPIPE and SIGXFSZ; an ignored signal stays ignored across exec.
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        apply(policy, SandboxContext(ipc_fd=None, pass_fds=(hello,)))
        os.write(hello, b"!")
        os.close(hello)
        os.chdir(cwd)
        _libc.execve(address, ctypes.addressof(argv), ctypes.addressof(envp))
        err = ctypes.get_errno()
        code = EXIT_NOT_FOUND if err == errno.ENOENT else EXIT_CANNOT_EXECUTE
        os.write(2, f"bitcoin-supervisor: {name}: {os.strerror(err)}\n".encode())
    except (SupervisorError, OSError) as exc:
        os.write(2, f"bitcoin-supervisor: sandbox run: {exc}\n".encode())
    except BaseException:  # the fork child's boundary: it must never return to the CLI
        traceback.print_exc()
    finally:
        os._exit(code)


def _forwarder(pid: int, seen: list[int]) -> Callable[[int, FrameType | None], None]:
    """A handler forwarding SIGTERM/SIGHUP once; any second signal kills the child."""
    def on_signal(signum: int, _frame: FrameType | None) -> None:
        seen.append(signum)
        if len(seen) > 1:
            os.kill(pid, signal.SIGKILL)
        elif signum != signal.SIGINT:  # the terminal sent SIGINT to the child already
            os.kill(pid, signum)
    return on_signal
