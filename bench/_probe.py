"""The benchmarks' minimal Python child: the floor a role is compared against, and the
caller at the far end of a brokered capability.

Run as a script (``python bench/_probe.py -ipcfd N``), not as ``-m bench._probe``, so it
imports only capnp and the project's ipc layer: nothing of the benchmark package.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import time

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import (
    Chain,
    Echo,
    Index,
    IndexedTransaction,
    IndexInfo,
    Init,
)
from bitcoin_supervisor.ipc import make_protocol

CALLS_ENV = "BENCH_PROBE_CALLS"
WARMUP_CALLS = 20
# Calls in flight at once in the pipelined series (a client that does not wait for one
# answer before asking again, as Bitcoin Core's wallet does while rescanning).
PIPELINE_DEPTH = 32


class _Echo(Echo):
    async def echo(self, message: str) -> str:
        """Return ``message`` unchanged."""
        return message


class _CallerIndex(Index):
    """What ``make_index`` must return; the probe indexes nothing."""

    async def get_info(self) -> IndexInfo:
        """Return an empty, synced index."""
        return IndexInfo(name="bench-probe", synced=True, best_block_height=0)

    async def get_transaction(self, txid: str) -> IndexedTransaction | None:
        """Return None: the probe knows no transactions."""
        return None


class ProbeInit(Init):
    """Serves Echo; on ``make_index(chain)`` times ``calls`` sequential ``get_tip`` calls,
    then ``calls`` more issued ``PIPELINE_DEPTH`` at a time (µs per call = batch time /
    depth).

    The samples go to stdout as one JSON line before ``make_index`` returns, so the
    caller reads them as soon as its call completes.
    """

    def __init__(self, calls: int) -> None:
        self._calls = calls

    async def make_echo(self) -> Echo:
        """Return an Echo served by this process."""
        return _Echo()

    async def make_index(self, chain: Chain) -> Index:
        """Time ``get_tip`` on ``chain`` (a capability forwarded by our parent)."""
        for _ in range(WARMUP_CALLS):
            await chain.get_tip()
        samples: list[float] = []
        for _ in range(self._calls):
            started = time.perf_counter_ns()
            await chain.get_tip()
            samples.append((time.perf_counter_ns() - started) / 1000)
        pipelined: list[float] = []
        for _ in range(max(1, self._calls // PIPELINE_DEPTH)):
            started = time.perf_counter_ns()
            await asyncio.gather(*(chain.get_tip() for _ in range(PIPELINE_DEPTH)))
            pipelined.append((time.perf_counter_ns() - started) / 1000 / PIPELINE_DEPTH)
        print(json.dumps({"event": "bench.samples", "samples_us": samples,
                          "pipelined_us": pipelined}), flush=True)
        return _CallerIndex()


def main() -> None:
    """Serve ``ProbeInit`` on the fd from ``-ipcfd N`` until the parent goes away."""
    if len(sys.argv) != 3 or sys.argv[1] != "-ipcfd":
        sys.exit(f"usage: {sys.argv[0]} -ipcfd <fd>")
    sock = socket.socket(fileno=int(sys.argv[2]))
    # stdout carries results; logs go to stderr, warnings only.
    log.configure(json=True, stream=sys.stderr, level=logging.WARNING)
    protocol = make_protocol()
    init = ProbeInit(int(os.environ.get(CALLS_ENV, "0")))
    protocol.run(lambda: protocol.serve(sock, init, name="bench-probe"))


if __name__ == "__main__":
    main()
