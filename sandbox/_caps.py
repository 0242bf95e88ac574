"""Give up privilege for good: no_new_privs, securebits, every capability set, MDWE,
and the resource limits and hostname that still need privilege to set."""

from __future__ import annotations

import functools
import resource
import socket
from collections.abc import Mapping

import prctl

from bitcoin_supervisor.interfaces import SandboxError

from ._libc import prctl as raw_prctl
from ._libc import sethostname

__all__ = ["drop_privileges", "limit_capabilities", "set_hostname", "set_no_new_privs",
           "set_rlimits"]

_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_PR_SET_MDWE, _PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
_RLIMIT_INFINITY = (1 << 64) - 1


def set_hostname(name: str) -> None:
    """Set the UTS namespace's hostname; SandboxError on failure."""
    try:
        sethostname(name)
    except OSError as exc:
        raise SandboxError(f"sethostname: {exc.strerror}") from exc
    if socket.gethostname() != name:
        raise SandboxError("sethostname did not take effect")


def set_rlimits(limits: Mapping[str, tuple[int, int]]) -> None:
    """Apply every ``RLIMIT_<NAME>``; SandboxError when one cannot be set."""
    for name, (soft, hard) in limits.items():
        which = getattr(resource, f"RLIMIT_{name.upper()}")
        soft, hard = (resource.RLIM_INFINITY if v == _RLIMIT_INFINITY else v
                      for v in (soft, hard))
        try:
            resource.setrlimit(which, (soft, hard))
        except (OSError, ValueError) as exc:
            raise SandboxError(f"setrlimit {name}=({soft}, {hard}): {exc}") from exc


def set_no_new_privs() -> None:
    """PR_SET_NO_NEW_PRIVS: execve can never grant privilege again (needed by Landlock)."""
    prctl.set_no_new_privs(True)
    if not prctl.get_no_new_privs():
        raise SandboxError("no_new_privs did not take effect")


@functools.cache
def last_cap() -> int:
    """The kernel's highest capability number (python-prctl's list can lag behind).

    Cached: the first call must happen while /proc/sys is visible (apply() makes it
    before pivot_root; the role's view mounts proc with subset=pid)."""
    return _read_last_cap()


def _read_last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as fh:
        return int(fh.read())


def drop_privileges(keep: tuple[str, ...], *, mdwe: bool) -> None:
    """Drop the bounding set (all but ``keep``), clear ambient caps, lock securebits,
    limit permitted/effective/inheritable to ``keep``, then enable MDWE if asked.

    Must run while CAP_SETPCAP is still held (inside the user namespace). Raises
    SandboxError on any failure or when a kernel feature is missing (fail closed).
    """
    wanted = {getattr(prctl, f"CAP_{name.upper()}") for name in keep}
    try:
        last = last_cap()
        for cap in range(last + 1):
            if cap not in wanted:
                raw_prctl(_PR_CAPBSET_DROP, cap)
        raw_prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
        bits = prctl.securebits
        bits.noroot = bits.noroot_locked = True
        bits.no_setuid_fixup = bits.no_setuid_fixup_locked = True
        bits.keep_caps = False
        bits.keep_caps_locked = True
        for capset in (prctl.cap_inheritable, prctl.cap_effective, prctl.cap_permitted):
            capset.limit(*wanted)
        if mdwe:
            raw_prctl(_PR_SET_MDWE, _PR_MDWE_REFUSE_EXEC_GAIN)
    except OSError as exc:
        raise SandboxError(f"dropping privileges failed: {exc}") from exc
    if not keep and _cap_eff() != 0:
        raise SandboxError("capabilities are still effective after the drop")


def limit_capabilities(keep: tuple[str, ...]) -> None:
    """Keep only ``keep`` in every capability set and the bounding set, without locking
    securebits (a fork server's children still change uid and drop the rest themselves).
    Raises SandboxError on failure."""
    wanted = {getattr(prctl, f"CAP_{name.upper()}") for name in keep}
    try:
        for cap in range(last_cap() + 1):
            if cap not in wanted:
                raw_prctl(_PR_CAPBSET_DROP, cap)
        raw_prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
        for capset in (prctl.cap_inheritable, prctl.cap_effective, prctl.cap_permitted):
            capset.limit(*wanted)
    except OSError as exc:
        raise SandboxError(f"limiting capabilities failed: {exc}") from exc


def _cap_eff() -> int:
    return sum(1 << getattr(prctl, f"CAP_{name.upper()}") for name in prctl.ALL_CAP_NAMES
               if getattr(prctl.cap_effective, name))
