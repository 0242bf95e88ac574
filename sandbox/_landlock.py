"""Restrict this process with Landlock: file access beneath the view's paths, TCP ports,
and scoping of signals and abstract unix sockets to the sandbox itself.

There is no Python binding for Landlock on this system (python 3.11, no ``landlock``
package in the venv), so the three syscalls are called through ctypes. The ABI version
is probed first and a missing feature fails closed with SandboxError.
"""

from __future__ import annotations

import ctypes
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from bitcoin_supervisor.interfaces import SandboxError

from ._libc import libc_pointer, syscall
from ._policy import FilesystemView, LandlockRules

__all__ = ["LandlockPlan", "abi_version", "plan", "restrict_self"]

_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 2
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1, 2, 4, 8
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 16, 32, 64, 128
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 256, 512, 1024, 2048, 4096
REFER, TRUNCATE, IOCTL_DEV = 8192, 16384, 32768
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1,
              5: (1 << 16) - 1}
_FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
READ = READ_FILE | READ_DIR
WRITE = (READ | WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SOCK
         | MAKE_FIFO | MAKE_SYM | REFER | TRUNCATE)
DEVICE = READ_FILE | WRITE_FILE | IOCTL_DEV
_NET_BIND, _NET_CONNECT = 1, 2
_SCOPES = {"abstract_unix_socket": 1, "signal": 2}


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64),
                ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPort(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


def abi_version() -> int:
    """Return the kernel's Landlock ABI version; SandboxError when Landlock is absent."""
    try:
        return syscall("landlock_create_ruleset", None, 0, _CREATE_RULESET_VERSION)
    except OSError as exc:
        raise SandboxError(f"Landlock is not available ({exc.strerror}): this kernel "
                           "cannot enforce the policy (needs Linux >= 6.7 with "
                           "lsm=landlock)") from exc


@dataclass(frozen=True)
class LandlockPlan:
    """Which rights go to which path; computed from the mount view before pivot_root."""

    paths: tuple[tuple[Path, int], ...]
    rules: LandlockRules


def plan(view: FilesystemView, rules: LandlockRules) -> LandlockPlan:
    """Derive path rights from the view: read for read-only binds and /proc, read-write
    for writable binds and tmpfs, read-write-ioctl for device nodes, read-execute for
    the view's ``executable`` files (nothing else may be executed). Pure."""
    paths = [(p, READ) for p in view.read_only]
    paths += [(p, WRITE) for p in view.read_write + view.tmpfs]
    paths += [(p, DEVICE) for p in view.devices]
    paths += [(p, READ_FILE | EXECUTE) for p in view.executable]
    if view.proc:
        paths.append((Path("/proc"), READ))
    return LandlockPlan(paths=tuple(paths), rules=rules)


def restrict_self(landlock: LandlockPlan) -> int:
    """Enforce ``landlock`` on this process (needs no_new_privs or CAP_SYS_ADMIN).

    Paths missing from the view are skipped (optional binds). Returns the ABI used.
    Raises SandboxError when the kernel lacks a feature the rules need (fail closed).
    """
    abi = abi_version()
    rules = landlock.rules
    if abi < 4:  # TCP is always handled: an empty port list must mean "no TCP"
        raise SandboxError(f"Landlock ABI {abi} cannot restrict TCP (needs ABI >= 4)")
    if abi < 6 and rules.scope:
        raise SandboxError(f"Landlock ABI {abi} cannot scope signals/sockets (needs 6)")
    fs_rights = _FS_BY_ABI.get(abi, _FS_BY_ABI[5])
    attr = _RulesetAttr(fs_rights, _NET_BIND | _NET_CONNECT,
                        sum(_SCOPES[s] for s in rules.scope))
    ruleset = syscall("landlock_create_ruleset", libc_pointer(attr), ctypes.sizeof(attr), 0)
    try:
        for path, rights in landlock.paths:
            _add_path(ruleset, path, rights & fs_rights)
        for port in rules.tcp_bind:
            _add_port(ruleset, port, _NET_BIND)
        for port in rules.tcp_connect:
            _add_port(ruleset, port, _NET_CONNECT)
        syscall("landlock_restrict_self", ruleset, 0)
    except OSError as exc:
        raise SandboxError(f"Landlock: {exc.strerror}") from exc
    finally:
        os.close(ruleset)
    return abi


def _add_path(ruleset: int, path: Path, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= _FILE_ONLY
        rule = _PathBeneath(rights, fd)
        syscall("landlock_add_rule", ruleset, _RULE_PATH_BENEATH, libc_pointer(rule), 0)
    finally:
        os.close(fd)


def _add_port(ruleset: int, port: int, rights: int) -> None:
    rule = _NetPort(rights, port)
    syscall("landlock_add_rule", ruleset, _RULE_NET_PORT, libc_pointer(rule), 0)
