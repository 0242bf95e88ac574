"""Naming the syscall that got a component killed by its seccomp filter."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable

import pyseccomp as seccomp

# The kernel logs every seccomp kill as an audit record (type 1326) in the kernel ring
# buffer, with the host pid and the syscall number; reading it needs CAP_SYSLOG when
# kernel.dmesg_restrict is set.
_RECORD = re.compile(r"type=1326 .*?\bpid=(?P<pid>\d+)\b.*?\bsyscall=(?P<nr>\d+)\b")
KMSG = "/dev/kmsg"


def find_violation(pids: Iterable[int], kmsg: str = KMSG) -> str | None:
    """Return the name of the last syscall a seccomp filter killed one of ``pids`` for.

    Returns None when no record names those pids or the kernel log is unreadable (not
    root under ``dmesg_restrict``): the caller still knows it was SIGSYS. Never raises.
    Reads the whole ring buffer without blocking; call it only after such a death.
    """
    wanted = {str(p) for p in pids}
    found: str | None = None
    try:
        fd = os.open(kmsg, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        while True:
            try:
                record = os.read(fd, 8192)
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten while reading: skip it
                    continue
                break  # EAGAIN: end of buffer
            if not record:
                break
            match = _RECORD.search(record.decode(errors="replace"))
            if match and match["pid"] in wanted:
                found = _name(int(match["nr"]))
    finally:
        os.close(fd)
    return found


def _name(number: int) -> str:
    name = seccomp.resolve_syscall(seccomp.Arch.NATIVE, number)
    text = name.decode() if isinstance(name, bytes) else str(name)
    return text or f"#{number}"
