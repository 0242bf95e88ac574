"""A fork-server entry point for tests: reports what a forked child holds (randomness,
descriptors) and proves it can build capnp state of its own, then exits."""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import socket
import sys

from bitcoin_supervisor.interfaces import Echo, Init
from bitcoin_supervisor.ipc import make_protocol


class _Echo(Echo):
    async def echo(self, message: str) -> str:
        return message


class _Init(Init):
    async def make_echo(self) -> Echo:
        return _Echo()


def main() -> None:
    """Print one JSON line on stdout, then exit 0 (3 if the capnp round trip failed)."""
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the directory listing's own fd, closed by now
            continue
    token = secrets.token_hex(8)
    protocol = make_protocol()

    async def round_trip() -> str:
        # A KJ loop, a server and a client created here, after the fork.
        ours, theirs = socket.socketpair()
        server = asyncio.ensure_future(protocol.serve(theirs, _Init(), name="probe-server"))
        connection = await protocol.connect(ours, peer="probe")
        try:
            return await (await connection.init.make_echo()).echo(token)
        finally:
            connection.close()
            server.cancel()

    echoed = protocol.run(round_trip)
    print(json.dumps({"pid": os.getpid(), "argv": sys.argv, "urandom": os.urandom(16).hex(),
                      "random": random.getrandbits(64), "fds": fds,
                      "echo_ok": echoed == token}), flush=True)
    sys.exit(0 if echoed == token else 3)
