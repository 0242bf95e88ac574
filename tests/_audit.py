"""Whether the kernel could have named the syscall of a seccomp kill: lets the "killed by
sandbox: syscall X" tests demand the name whenever the kernel logged it, and accept a
bare SIGSYS only when the kernel log itself shows why it could not."""

from __future__ import annotations

import errno
import os
import re

from bitcoin_supervisor.sandbox import pids_are_host_pids

_AUDIT = re.compile(r"audit: type=\d+ audit\((\d+\.\d+):\d+\)")
_SUPPRESSED = re.compile(r"kauditd_printk_skb: \d+ callbacks suppressed")


def _kernel_log() -> list[str]:
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    lines = []
    try:
        while True:
            try:
                record = os.read(fd, 8192)
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten while we read
                    continue
                return lines
            lines.append(record.decode(errors="replace"))
    finally:
        os.close(fd)


def _sysctl(name: str, default: int) -> int:
    try:
        with open(f"/proc/sys/kernel/{name}", encoding="ascii") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return default


def why_unnamed(since: float, until: float) -> str | None:
    """Why the kernel log cannot name the syscall of a kill between ``since`` and
    ``until`` (``time.time()``), or None when nothing stopped it."""
    if not pids_are_host_pids():
        return "runs in a pid namespace: audit records name host pids"
    try:
        lines = _kernel_log()
    except OSError as exc:
        return f"kernel log unreadable ({exc.strerror})"
    interval = _sysctl("printk_ratelimit", 5)
    burst = _sysctl("printk_ratelimit_burst", 10)
    # Audit records reach the log through printk_ratelimit() (a fixed window of
    # `interval` s, `burst` messages): a suppressed record means `burst` records printed
    # in the `interval` s before it; the kernel says so later ("callbacks suppressed").
    times = [(i, float(m[1])) for i, line in enumerate(lines) if (m := _AUDIT.search(line))]
    window = [i for i, t in times if since - interval - 1 <= t <= until]
    if len(window) >= burst:
        return f"{len(window)} audit records printed around the kill (printk burst {burst})"
    first = window[0] if window else len(lines)
    if any(_SUPPRESSED.search(line) for line in lines[first:]):
        return "the kernel says it suppressed audit records"
    if not times:
        return "the kernel log holds no audit records at all (audit off)"
    return None
