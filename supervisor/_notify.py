"""sd_notify(3): tell systemd (Type=notify) the daemon is ready or stopping, never blocking.

The daemon notifies from its event loop, which every brokered call crosses. A datagram to a
receiver that does not drain its queue (a stuck systemd, or anyone who can set
``$NOTIFY_SOCKET``) would block a blocking ``sendto`` and with it the loop, brokered calls
and SIGTERM; so sends are non-blocking and a datagram that cannot go out is dropped,
counted, and logged once per burst of drops.
"""

from __future__ import annotations

import os
import socket

from bitcoin_supervisor.log import get_logger

__all__ = ["Notifier", "sd_notify", "watchdog_interval"]

log = get_logger()


def _address(environ: dict[str, str] | None) -> str | None:
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return None
    if address.startswith("@"):
        return "\0" + address[1:]  # abstract namespace
    return address


def sd_notify(message: str, environ: dict[str, str] | None = None) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``) to ``$NOTIFY_SOCKET``; False when unset.

    Hand-written on purpose: the protocol is one datagram on a unix socket, and the
    libraries for it (sdnotify, systemd-python) add a dependency or a C build for that.
    Never blocks: raises BlockingIOError when the receiver's queue is full, OSError if the
    socket is set but unreachable. The daemon uses ``Notifier``, which never raises.
    """
    address = _address(environ)
    if address is None:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                       | socket.SOCK_NONBLOCK) as sock:
        sock.sendto(message.encode(), address)
    return True


class Notifier:
    """The daemon's notifications: one non-blocking socket, drops counted.

    A burst is a run of sends that failed (queue full, receiver gone): its first drop is
    logged as ``supervisor.notify_dropped``, the send that ends it as
    ``supervisor.notify_resumed`` with the burst's count, so a receiver that never drains
    costs two log lines, not one per ping.
    """

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        self._address = _address(environ)
        self._sock: socket.socket | None = None
        self.sent = 0
        self.dropped = 0  # over the daemon's lifetime
        self._burst = 0

    def send(self, message: str) -> bool:
        """Send ``message`` now or drop it; True if it went out, False if dropped or
        ``$NOTIFY_SOCKET`` is unset. Never blocks, never raises."""
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM
                                           | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
            self._sock.sendto(message.encode(), self._address)
        except OSError as exc:
            self.dropped += 1
            self._burst += 1
            if self._burst == 1:
                log.warning("supervisor.notify_dropped", message=message[:80],
                            error=exc.strerror or str(exc))
            return False
        self.sent += 1
        if self._burst:
            log.info("supervisor.notify_resumed", dropped=self._burst, total_dropped=self.dropped)
            self._burst = 0
        return True

    def close(self) -> None:
        """Close the socket (a later ``send`` opens a new one). Idempotent."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


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
