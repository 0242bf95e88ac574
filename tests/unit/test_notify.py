"""sd_notify and the watchdog interval, over a real datagram socket."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from bitcoin_supervisor.supervisor._notify import sd_notify, watchdog_interval


def test_sd_notify_sends_one_datagram(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        assert sd_notify("READY=1", {"NOTIFY_SOCKET": str(path)}) is True
        assert sock.recv(64) == b"READY=1"
    assert sd_notify("READY=1", {}) is False


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    me = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": me}) == 15.0
    # Another process's pid (not "1": the suite may run as pid 1 of a container).
    other = str(os.getpid() + 1)
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": other}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({}) is None
