"""The sandbox policy model: what one role may see and do, fully resolved (no templates)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ArgCompare",
    "CgroupLimits",
    "FilesystemView",
    "LandlockRules",
    "Policy",
    "SeccompRules",
    "SyscallRule",
]

NAMESPACES = ("user", "mount", "pid", "net", "ipc", "uts", "cgroup")
RLIMITS = ("as", "core", "cpu", "data", "fsize", "memlock", "nofile", "nproc", "stack",
           "msgqueue", "nice", "rtprio", "sigpending", "locks")
LANDLOCK_SCOPES = ("signal", "abstract_unix_socket")


@dataclass(frozen=True)
class ArgCompare:
    """``(arg[index] & mask) == value`` on the low 32 bits (the width the kernel uses for
    int arguments, so ``cmd | 1 << 32`` cannot slip past a 64-bit compare)."""

    index: int
    mask: int
    value: int


@dataclass(frozen=True)
class SyscallRule:
    """One conditional rule: ``action`` when every compare in ``args`` holds."""

    syscall: str
    action: str
    args: tuple[ArgCompare, ...]


@dataclass(frozen=True)
class SeccompRules:
    """A seccomp filter in policy terms; ``allow`` already has every group expanded.

    Actions are ``"allow"``, ``"kill_process"``, ``"kill_thread"``, ``"trap"``, ``"log"``
    or ``"errno:ENAME"``.
    """

    default_action: str
    allow: frozenset[str]
    errno: Mapping[str, int]
    rules: tuple[SyscallRule, ...]
    groups: tuple[str, ...] = ()
    # Why a syscall on the dangerous list (syscalls.toml) is allowed anyway; no effect on
    # the filter, checked by the policy lint.
    justification: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FilesystemView:
    """The mount view: absolute host paths, shown at the same paths inside.

    ``optional`` holds the paths that are skipped (not an error) when missing on the host.
    ``executable`` lists the files Landlock lets ``execve`` open (the program and its ELF
    interpreter); empty for the roles, which never exec (``sandbox run`` fills it).
    """

    read_only: tuple[Path, ...]
    read_write: tuple[Path, ...]
    tmpfs: tuple[Path, ...]
    devices: tuple[Path, ...]
    proc: bool
    optional: frozenset[Path] = frozenset()
    executable: tuple[Path, ...] = ()


@dataclass(frozen=True)
class LandlockRules:
    """Landlock on top of the mount view; fs rights are derived from ``FilesystemView``."""

    enabled: bool
    tcp_bind: tuple[int, ...]
    tcp_connect: tuple[int, ...]
    scope: frozenset[str]
    # True: a kernel without Landlock logs a warning and the role runs without it.
    optional: bool = False


@dataclass(frozen=True)
class CgroupLimits:
    """The ``[cgroup]`` limits of a role; ``None`` means no limit ("max").

    ``optional`` says what happens where the limits cannot be applied (no controller, no
    permission): ``"no"`` fails closed, ``"yes"`` warns and continues, ``"unprivileged"``
    fails closed only when the process is root (an unprivileged supervisor without a
    delegated cgroup warns and continues, as it runs without the outer uid switch too).
    """

    memory_max: int | None
    pids_max: int | None
    optional: str = "no"

    def controllers(self) -> tuple[str, ...]:
        """The controllers these limits need, in the order they are applied."""
        return tuple(name for name, limit in (("memory", self.memory_max),
                                              ("pids", self.pids_max)) if limit is not None)


@dataclass(frozen=True)
class Policy:
    """One role's resolved sandbox policy (from ``load_policy``); immutable."""

    role: str
    source: Path
    namespaces: frozenset[str]
    hostname: str | None
    filesystem: FilesystemView
    network: str
    capabilities: tuple[str, ...]
    rlimits: Mapping[str, tuple[int, int]]
    landlock: LandlockRules
    seccomp: SeccompRules
    uid: int | None
    gid: int | None
    keep_fds: tuple[int, ...] = (0, 1, 2)
    mdwe: bool = True
    cgroup: CgroupLimits | None = None

    def summary(self) -> dict[str, Any]:
        """The one-line-worthy facts ``status`` shows: namespaces, network, seccomp
        default action and allowed-syscall count, Landlock, uid. Never raises."""
        return {
            "policy": str(self.source),
            "namespaces": sorted(self.namespaces),
            "network": self.network,
            "seccomp_default": self.seccomp.default_action,
            "seccomp_allowed": len(self.seccomp.allow | {r.syscall for r in self.seccomp.rules}),
            "landlock": self.landlock.enabled,
            "capabilities": list(self.capabilities),
            "uid": self.uid,
        }
