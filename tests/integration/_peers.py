"""Programs that stand in for foreign peers in integration tests (written to files and run
by the supervisor, confined like any component)."""

from __future__ import annotations

import sys
from pathlib import Path

# A bind-mode program: listens on argv[1] and serves our Init (with Echo) to each
# connection. argv[2] says how: "late:S" binds after S seconds, "never" never binds,
# "dying" exits as soon as the supervisor connects, "drop:S" closes the link after S
# seconds and lives on (only the lost link says it is gone).
BIND_PEER = f"""#!{sys.executable}
import asyncio, os, signal, socket, sys
from bitcoin_supervisor.interfaces import Echo, Init
from bitcoin_supervisor.ipc import make_protocol

path, mode = sys.argv[1], sys.argv[2]

class Hello(Echo):
    async def echo(self, message):
        return message

class BoundInit(Init):
    async def make_echo(self):
        return Hello()

protocol = make_protocol()

async def main():
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if mode.startswith("late:"):
        await asyncio.sleep(float(mode[5:]))
    if mode != "never":
        os.makedirs(os.path.dirname(path), exist_ok=True)
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        listener.listen()
        listener.setblocking(False)
        conn, _ = await loop.sock_accept(listener)
        print("accepted", file=sys.stderr, flush=True)
        if mode == "dying":
            sys.exit(3)
        serving = asyncio.ensure_future(protocol.serve(conn, BoundInit(), name="bound"))
        if mode.startswith("drop:"):
            await asyncio.sleep(float(mode[5:]))
            serving.cancel()  # closes the link; the process lives on
    await stop.wait()
    return 0

sys.exit(protocol.run(main))
"""


def write_program(directory: Path, name: str, text: str) -> Path:
    """Write ``text`` as an executable program ``directory/name``; return its path."""
    program = directory / name
    program.write_text(text)
    program.chmod(0o755)
    return program

