"""A notify socket that never drains cannot freeze the daemon: status, brokered calls and
SIGTERM keep working, and the dropped datagrams cost one log line per burst."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from .conftest import free_port, launch, stop_system, write_config


def test_a_full_notify_queue_never_blocks_the_loop(tmp_path: Path) -> None:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    receiver.bind(str(path))
    # Fill its queue before the daemon starts; nobody ever reads it.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK) as filler:
        try:
            while True:
                filler.sendto(b"X", str(path))
        except BlockingIOError:
            pass
    port = free_port()
    system = launch(write_config(tmp_path, port), rpcport=port, env={
        **os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "20000"})
    try:
        system.log.wait_for(lambda e: e.get("event") == "supervisor.ready")
        assert {c["state"] for c in system.status()["components"]} == {"active"}
        # A wallet call crosses the daemon's loop (node -> supervisor -> wallet).
        assert system.rpc("createwallet", "w")
        assert system.rpc("getwalletinfo", wallet="w")
        assert system.status()["supervisor"]["pid"] == system.process.pid
        started = time.monotonic()
        system.process.send_signal(signal.SIGTERM)
        assert system.process.wait(timeout=30) == 0
        stop_s = time.monotonic() - started
        system.log.wait_for(lambda e: e.get("event") == "supervisor.stopped")
        dropped = [e for e in system.log.events if e.get("event") == "supervisor.notify_dropped"]
        assert len(dropped) == 1, dropped  # every ping, STATUS and STOPPING: one burst
        assert dropped[0]["error"] == "Resource temporarily unavailable"
        assert stop_s < 15, stop_s
    finally:
        stop_system(system)
        receiver.close()
