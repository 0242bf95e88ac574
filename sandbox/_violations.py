"""Naming the syscall that got a component killed by its seccomp filter."""

from __future__ import annotations

import errno
import os
import re
import select
import time
from collections.abc import Iterable, Iterator

from ._syscalls import syscall_name

# The kernel logs every seccomp kill as an audit record (type 1326) in the kernel ring
# buffer, with the wall-clock time, the host pid and the syscall number; reading it needs
# CAP_SYSLOG when kernel.dmesg_restrict is set.
_RECORD = re.compile(r"type=1326 audit\((?P<time>\d+\.\d+):\d+\): .*?\bpid=(?P<pid>\d+)\b"
                     r".*?\bsyscall=(?P<nr>\d+)\b")
KMSG = "/dev/kmsg"
# The audit time is the kernel's coarse clock (a tick behind at most) cut to milliseconds.
_CLOCK_SLACK_S = 0.05
# /proc/self/ns/pid's inode in the initial pid namespace (PROC_PID_INIT_INO, fixed).
_INIT_PID_NS_INODE = 0xEFFFFFFC


def pids_are_host_pids() -> bool:
    """Whether this process sees the pids the kernel writes into audit records (it runs
    in the initial pid namespace). In a container they are the host's: no match is
    possible, and a coincidental one would name the wrong syscall."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino == _INIT_PID_NS_INODE
    except OSError:
        return False


def unnamed_reason() -> str:
    """Why ``find_violation`` may name no syscall here, for a user: certain in a pid
    namespace (a container), where the records name pids this process cannot see;
    otherwise the kernel log was unreadable or dropped the record. Never raises."""
    if not pids_are_host_pids():
        return ("running in a pid namespace, the kernel's audit records name pids this "
                "process cannot see")
    return "the kernel log names no syscall: unreadable or rate-limited"


def find_violation(pids: Iterable[int], kmsg: str = KMSG, wait_s: float = 0.5, *,
                   started_at: float | None = None) -> str | None:
    """Return the name of the last syscall a seccomp filter killed one of ``pids`` for.

    ``started_at`` (``time.time()`` taken before the process was spawned) makes records
    older than the process not count: a reused pid would otherwise match the record of
    an earlier process and blame the wrong syscall.
    Returns None when no record names those pids within ``wait_s``, the kernel log is
    unreadable (not root under ``dmesg_restrict``), the kernel dropped the record (audit
    messages are printk rate-limited when no auditd runs) or this process runs in a pid
    namespace, where the kernel's records name pids it cannot see (``kmsg`` is then not
    read): the caller still knows it was SIGSYS.
    Never raises. Blocks up to ``wait_s``: without auditd the kernel's audit thread
    prints the record asynchronously, so it may land just after the process died.
    """
    if kmsg == KMSG and not pids_are_host_pids():
        return None
    wanted = {str(p) for p in pids}
    oldest = None if started_at is None else started_at - _CLOCK_SLACK_S
    try:
        fd = os.open(kmsg, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    found: str | None = None
    deadline = time.monotonic() + wait_s
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    try:
        while True:
            for record in _drain(fd):
                for line in record.splitlines():  # a plain file (tests) reads many at once
                    match = _RECORD.search(line)
                    if (match and match["pid"] in wanted
                            and (oldest is None or float(match["time"]) >= oldest)):
                        found = _name(int(match["nr"]))
            remaining = deadline - time.monotonic()
            if found is not None or remaining <= 0:
                return found
            poller.poll(remaining * 1000)
    finally:
        os.close(fd)


def _drain(fd: int) -> Iterator[str]:
    """Yield every record readable now (one per read, as /dev/kmsg hands them out)."""
    while True:
        try:
            record = os.read(fd, 8192)
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # overwritten while we read: skip it
                continue
            return  # EAGAIN: nothing more for now
        if not record:
            return
        yield record.decode(errors="replace")


def _name(number: int) -> str:
    return syscall_name(number) or f"#{number}"
