"""A capnp object is never freed off the KJ loop's thread, whatever thread collects garbage.

Issue 9: killing a wallet or index sometimes killed the node ("expected loop != nullptr;
No event loop is running on this thread"): the traceback cycle of a call to the dead peer
held its capability, and the node's miner thread ran the cyclic collector. A collection
on a foreign thread aborts the whole process, so that part runs in a subprocess.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

from _ipc_roles import EchoImpl, run, served

from bitcoin_supervisor.interfaces import Echo, Init, PeerGoneError

FOREIGN_THREAD_COLLECTS = textwrap.dedent("""
    import asyncio, gc, threading, weakref
    from _ipc_roles import EchoImpl, run, served
    from bitcoin_supervisor.interfaces import Init

    class EchoInit(Init):
        def __init__(self):
            self.served = None
        async def make_echo(self):
            self.served = EchoImpl()
            return self.served

    def churn():
        # Allocation on a worker thread crosses the collector's threshold here, as the
        # node's miner thread did, and a explicit collection too.
        for _ in range(200_000):
            a = []; a.append(a)
        gc.collect()

    async def main():
        init = EchoInit()
        async with served(init) as (conn, _task):
            echo = await conn.init.make_echo()
            assert await echo.echo("up") == "up"
            released = asyncio.Event()
            loop = asyncio.get_running_loop()
            weakref.finalize(init.served, loop.call_soon_threadsafe, released.set)
            init.served = None
            cycle = [echo]
            cycle.append(cycle)
            del echo, cycle
            worker = threading.Thread(target=churn)
            worker.start()
            await loop.run_in_executor(None, worker.join)
            # The loop collects the cycle itself; the release then reaches the server.
            await asyncio.wait_for(released.wait(), 10)
            assert await (await conn.init.make_echo()).echo("still here") == "still here"
        print("survived")

    run(main)
""")


def test_garbage_collected_on_a_worker_thread_never_frees_a_capability_there() -> None:
    result = subprocess.run([sys.executable, "-c", FOREIGN_THREAD_COLLECTS],
                            capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).parent)
    assert "loop != nullptr" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("survived")


class _EchoInit(Init):
    async def make_echo(self) -> Echo:
        return EchoImpl()


def test_a_call_to_a_dead_peer_leaves_no_cycle_holding_its_capability() -> None:
    async def main() -> None:
        async with served(_EchoInit()) as (conn, task):
            echo = await conn.init.make_echo()
            gone = weakref.ref(echo)
            task.cancel()
            await conn.wait_disconnected()
            try:
                await echo.echo("anyone?")
            except PeerGoneError:
                pass
            del echo
            # The failed future still holds the KjException (whose traceback holds the
            # call's frame) until the loop turns once more; then reference counting frees
            # the capability, here, on the loop, with the collector switched off.
            for _ in range(2):
                await asyncio.sleep(0)
            assert gone() is None

    enabled = gc.isenabled()
    gc.disable()
    try:
        run(main)
    finally:
        if enabled:
            gc.enable()
