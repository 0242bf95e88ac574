"""sd_notify(3): tell systemd (Type=notify) the daemon is ready or stopping."""

from __future__ import annotations

import os
import socket


def sd_notify(message: str, environ: dict[str, str] | None = None) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``) to ``$NOTIFY_SOCKET``; False when unset.

    Hand-written on purpose: the protocol is one datagram on a unix socket, and the
    libraries for it (sdnotify, systemd-python) add a dependency or a C build for that.
    Raises OSError if the socket is set but unreachable.
    """
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(message.encode(), address)
    return True


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of systemd's ``WatchdogSec=``), or None
    when no watchdog is asked for this process (``$WATCHDOG_USEC`` unset, or
    ``$WATCHDOG_PID`` names another process). Never raises."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000
