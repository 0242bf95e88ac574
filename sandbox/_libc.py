"""Typed ctypes wrappers for the kernel calls Python 3.11 does not expose.

``os.unshare`` arrived in Python 3.12 and there is no binding for pivot_root,
mount_setattr or Landlock here, so they go through libc's ``syscall``. Every wrapper
raises OSError (with the call's name) on failure.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["clone_sibling", "mount", "mount_setattr", "pivot_root", "prctl", "sethostname",
           "syscall", "umount2", "unshare", "SYSCALLS"]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# Syscall numbers by machine; Landlock and mount_setattr share the generic numbers.
SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {"pivot_root": 155, "mount_setattr": 442, "landlock_create_ruleset": 444,
               "landlock_add_rule": 445, "landlock_restrict_self": 446},
    "aarch64": {"pivot_root": 41, "mount_setattr": 442, "landlock_create_ruleset": 444,
                "landlock_add_rule": 445, "landlock_restrict_self": 446},
}

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC = 1, 2, 4, 8


def _check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def syscall_number(name: str) -> int:
    """Return the number of ``name`` on this machine; OSError(ENOSYS) if unknown here."""
    table = SYSCALLS.get(platform.machine(), {})
    if name not in table:
        raise OSError(38, f"{name}: no syscall number known for {platform.machine()}")
    return table[name]


def syscall(name: str, *args: int | ctypes.c_void_p | bytes | None) -> int:
    """Call syscall ``name`` with integer/pointer args; returns its result."""
    return _check(int(_libc.syscall(syscall_number(name), *args)), name)


def _enc(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def unshare(flags: int) -> None:
    """unshare(2)."""
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    """mount(2)."""
    _check(_libc.mount(_enc(source), _enc(target), _enc(fstype), ctypes.c_ulong(flags),
                       _enc(data)), f"mount {target}")


def umount2(target: str, flags: int) -> None:
    """umount2(2)."""
    _check(_libc.umount2(target.encode(), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2)."""
    syscall("pivot_root", new_root.encode(), put_old.encode())


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount_setattr(path: str, attr_set: int, *, recursive: bool) -> None:
    """mount_setattr(2) on ``path`` (and every mount below it when ``recursive``)."""
    attr = _MountAttr(attr_set, 0, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    _check(int(_libc.syscall(syscall_number("mount_setattr"), -100, path.encode(),
                             ctypes.c_uint(flags), ctypes.byref(attr),
                             ctypes.c_size_t(ctypes.sizeof(attr)))),
           f"mount_setattr {path}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """Raw prctl(2), for options python-prctl does not know (MDWE, ambient caps)."""
    return _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2),
                              ctypes.c_ulong(arg3), ctypes.c_ulong(arg4),
                              ctypes.c_ulong(arg5)), f"prctl({option})")


def sethostname(name: str) -> None:
    """sethostname(2)."""
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


# clone3 has one number on every architecture (the generic table), unlike clone, whose
# argument order differs by machine.
_NR_CLONE3 = 435
_CLONE_PIDFD, _CLONE_PARENT = 0x1000, 0x8000
# PyDLL, not CDLL: the GIL stays held across the call, as os.fork holds it, so the child
# starts with the only thread holding it.
_pylibc = ctypes.PyDLL(None, use_errno=True)
_pylibc.syscall.restype = ctypes.c_long


class _CloneArgs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
        "tls", "set_tid", "set_tid_size", "cgroup")]


def clone_sibling() -> tuple[int, int]:
    """Fork the calling process as a child of *its* parent (clone3 with CLONE_PARENT):
    returns (pid, pidfd of the new process) in the caller and (0, -1) in the new process.
    Raises OSError (ENOSYS before Linux 5.5, EAGAIN, ENOMEM).

    For single-threaded callers only, and the new process must not rely on Python's
    at-fork hooks (os.register_at_fork): unlike os.fork, none run. Python has no binding
    for clone3, hence this wrapper; glibc's cached thread id in the new process is the
    caller's (glibc itself asks the kernel wherever that matters: raise, abort, fork).
    """
    pidfd = ctypes.c_int(-1)
    # exit_signal must be 0 with CLONE_PARENT: the kernel uses the caller's own, so the
    # shared parent gets SIGCHLD as for any child.
    args = _CloneArgs(flags=_CLONE_PARENT | _CLONE_PIDFD, pidfd=ctypes.addressof(pidfd))
    pid = _check(int(_pylibc.syscall(_NR_CLONE3, ctypes.byref(args),
                                     ctypes.c_size_t(ctypes.sizeof(args)))), "clone3")
    return (pid, pidfd.value) if pid else (0, -1)


def libc_pointer(obj: ctypes.Structure) -> ctypes.c_void_p:
    """Return a void pointer to ``obj`` for ``syscall`` arguments."""
    return ctypes.c_void_p(ctypes.addressof(obj))
