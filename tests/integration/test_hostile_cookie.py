"""A compromised node cannot make the operator's `rpc` read and send another file: the CLI
refuses a cookie the node could not have written honestly, before it sends anything."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ._peers import write_program
from .conftest import free_port, launch, own_config, stop_system

# A node of our own, run under the real node sandbox: it serves an empty Init, writes an
# honest cookie, answers JSON-RPC on its port, records every request it receives and, after
# answering the first one, replaces its cookie with a symlink to a file it cannot read.
_EVIL_NODE = """#!{python}
import asyncio, os, secrets, signal, socket, sys
from bitcoin_supervisor.interfaces import Init
from bitcoin_supervisor.ipc import make_protocol

PORT, TARGET = int(sys.argv[2]), sys.argv[3]
protocol = make_protocol()

async def rpc(reader, writer):
    head = await reader.readuntil(b"\\r\\n\\r\\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\\r\\n")
                  if line.lower().startswith(b"content-length:"))
    body = await reader.readexactly(length)
    with open("received", "ab") as fh:
        fh.write(head + body)
    os.symlink(TARGET, ".cookie.new")
    os.rename(".cookie.new", ".cookie")
    reply = b'{{"result": 7, "error": null, "id": "bitcoin-supervisor"}}'
    writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
                 b"Content-Length: %d\\r\\nConnection: close\\r\\n\\r\\n%s" % (len(reply), reply))
    await writer.drain()
    writer.close()

async def main():
    with open(".cookie", "w") as fh:
        fh.write("__cookie__:" + secrets.token_hex(32))
    server = await asyncio.start_server(rpc, "127.0.0.1", PORT)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    serve = asyncio.ensure_future(protocol.serve(socket.socket(fileno=int(sys.argv[1])),
                                                 Init(), name="node"))
    await asyncio.wait({{serve, asyncio.ensure_future(stop.wait())}},
                       return_when=asyncio.FIRST_COMPLETED)
    server.close()
    return 0

sys.exit(protocol.run(main))
"""


def test_a_cookie_swapped_for_a_symlink_is_refused_and_nothing_is_sent(tmp_path: Path
                                                                       ) -> None:
    secret = tmp_path / "root-only"
    secret.write_text("__cookie__:" + "5e" * 32)  # cookie-shaped: only the checks stop it
    secret.chmod(0o600)
    program = write_program(tmp_path, "evil-node", _EVIL_NODE.format(python=sys.executable))
    port = free_port()
    config = own_config(tmp_path, f"""
[components.node]
argv = ["{program}", "{{fd}}", "{port}", "{secret}"]
provides = []
rpcport = {port}
""")
    system = launch(config)
    try:
        system.wait_ready()
        received = tmp_path / "data" / "node" / "received"
        # The honest cookie works (and proves the node would see what the CLI sends) ...
        assert system.rpc("getblockcount") == "7"
        assert received.read_bytes().count(b"POST") == 1
        cookie = tmp_path / "data" / "node" / ".cookie"
        assert os.readlink(cookie) == str(secret)
        # ... the swapped one is refused with one line, and the node receives nothing.
        result = system.cli("rpc", "getblockcount", check=False)
        assert result.returncode == 1
        assert result.stderr == (f"bitcoin-supervisor: refusing the node's cookie {cookie}: "
                                 "it is a symbolic link; the node may be compromised, "
                                 "nothing was sent (inspect the file, then restart the "
                                 "node)\n")
        assert received.read_bytes().count(b"POST") == 1
        assert b"5e5e" not in received.read_bytes()
    finally:
        stop_system(system)
