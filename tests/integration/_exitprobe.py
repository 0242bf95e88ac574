"""A fork-server entry point for tests: waits on its IPC link for one line naming an exit
code, then exits with it (the way a role ends after its template may have died)."""

from __future__ import annotations

import os
import socket
import sys


def main() -> None:
    """Read ``<code>\\n`` from the link named by ``-ipcfd N`` and exit with that code."""
    link = socket.socket(fileno=int(sys.argv[2]))
    print("ready", flush=True)
    data = b""
    while not data.endswith(b"\n"):
        chunk = link.recv(16)
        if not chunk:
            os._exit(1)
        data += chunk
    os._exit(int(data))
