"""sd_notify and the watchdog interval, over a real datagram socket."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from structlog.testing import capture_logs

from bitcoin_supervisor.supervisor._notify import Notifier, sd_notify, watchdog_interval


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


def _fill(path: Path) -> int:
    """Send to ``path`` until its receive queue is full; return how many fit."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK) as sock:
        count = 0
        while True:
            try:
                sock.sendto(b"X", str(path))
            except BlockingIOError:
                return count
            count += 1


def test_a_full_queue_drops_without_blocking_and_logs_once_per_burst(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(path))
        queued = _fill(path)
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        with capture_logs() as logs:
            assert [notifier.send("WATCHDOG=1") for _ in range(100)] == [False] * 100
            for _ in range(queued):  # the receiver drains at last
                receiver.recv(64)
            assert notifier.send("READY=1") is True
            assert receiver.recv(64) == b"READY=1"
            _fill(path)
            assert notifier.send("STOPPING=1") is False
        notifier.close()
    assert [(e["event"], e.get("dropped")) for e in logs] == [
        ("supervisor.notify_dropped", None), ("supervisor.notify_resumed", 100),
        ("supervisor.notify_dropped", None)]
    assert logs[0]["message"] == "WATCHDOG=1" and logs[0]["error"]
    assert (notifier.sent, notifier.dropped) == (1, 101)


def test_a_vanished_receiver_is_a_burst_too(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with capture_logs() as logs:
        assert notifier.send("STATUS=x") is False
        assert notifier.send("STATUS=y") is False
    assert [e["event"] for e in logs] == ["supervisor.notify_dropped"]
    assert logs[0]["error"] == "No such file or directory"
    assert Notifier({}).send("READY=1") is False
