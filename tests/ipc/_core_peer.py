"""A stand-in for a real bitcoin-node's IPC (shared by ipc and integration tests)."""

from __future__ import annotations

import sys

# Serves Bitcoin Core v30's Init under Core's wire ids (core.capnp; its Echo is
# echo.capnp's, which carries Core's id), the way a C++ libmultiprocess server does:
# every call that has a Context must name a Thread this server made (no pool), and
# Echo.destroy twice is an error (a C++ server would crash).
# Bind mode like bitcoin-node -ipcbind=unix: listens on argv[1]. Prints "listening" on
# stderr once it does, then one stderr line per call so a test can see what was called.
CORE_PEER = f"""#!{sys.executable}
import asyncio, os, signal, socket, sys
import capnp
from bitcoin_supervisor.ipc.capnp import load_schemas

S = load_schemas()
threads = set()

def log(*words):
    print(*words, file=sys.stderr, flush=True)

class Thread(S.proxy.Thread.Server):
    def __init__(self, name):
        self.name = name
    async def getName(self, **kwargs):
        return self.name

class ThreadMap(S.proxy.ThreadMap.Server):
    async def makeThread(self, name, **kwargs):
        thread = Thread(name)
        threads.add(thread)
        return thread

async def on_thread(context):
    # A C++ server without a pool runs a call on the thread the client named; a null
    # or foreign thread is "invalid thread handle".
    if not context._has("thread"):
        raise ValueError("invalid thread handle")
    name = (await context.thread.getName()).result
    if not any(t.name == name for t in threads):
        raise ValueError("invalid thread handle")

class Echo(S.echo.Echo.Server):
    def __init__(self):
        self.destroyed = False
    async def echo(self, context, echo, **kwargs):
        await on_thread(context)
        if self.destroyed:
            raise ValueError("use after destroy")
        log("echo", echo)
        return echo
    async def destroy(self, context, **kwargs):
        await on_thread(context)
        if self.destroyed:
            raise ValueError("destroy called twice")
        self.destroyed = True

class Init(S.core.CoreInit.Server):
    async def construct(self, threadMap, **kwargs):
        log("construct")
        return ThreadMap()
    async def makeEcho(self, context, **kwargs):
        await on_thread(context)
        log("makeEcho")
        return Echo()

async def serve(conn):
    stream = await capnp.AsyncIoStream.create_connection(sock=conn)
    server = capnp.TwoPartyServer(stream, bootstrap=Init())
    try:
        await server.on_disconnect()
    except capnp.KjException:
        pass

async def main():
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    path = sys.argv[1]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()
    listener.setblocking(False)
    log("listening")
    async def accept():
        while True:
            conn, _ = await loop.sock_accept(listener)
            asyncio.ensure_future(serve(conn))
    acceptor = asyncio.ensure_future(accept())
    await stop.wait()
    acceptor.cancel()

asyncio.run(capnp.run(main()))
"""
