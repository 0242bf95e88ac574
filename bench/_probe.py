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
from bitcoin_supervisor.ipc import IntroInbox, make_protocol
from bitcoin_supervisor.roles._intro import IntroducingInit

CALLS_ENV = "BENCH_PROBE_CALLS"
BATCHES_ENV = "BENCH_PROBE_BATCHES"
IN_FLIGHT_ENV = "BENCH_PROBE_IN_FLIGHT"
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

    def __init__(self, calls: int, batches: int = 0, in_flight: int = 0) -> None:
        self._calls = calls
        self._batches = batches
        self._in_flight = in_flight

    async def make_echo(self) -> Echo:
        """Return an Echo served by this process."""
        return _Echo()

    async def make_index(self, chain: Chain) -> Index:
        """Time ``get_tip`` on ``chain`` (forwarded by our parent, or introduced): when
        the first call was answered (``time.monotonic``, comparable across processes),
        ``calls`` sequential calls, then ``batches`` of ``in_flight`` calls at once."""
        await chain.get_tip()
        first_answered = time.monotonic()
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
        rates: list[float] = []
        for _ in range(self._batches):
            started = time.perf_counter_ns()
            await asyncio.gather(*(chain.get_tip() for _ in range(self._in_flight)))
            rates.append(self._in_flight / ((time.perf_counter_ns() - started) / 1e9))
        print(json.dumps({"event": "bench.samples", "samples_us": samples,
                          "pipelined_us": pipelined, "first_answered": first_answered,
                          "calls_per_s": rates}), flush=True)
        return _CallerIndex()


def main() -> None:
    """Serve ``ProbeInit`` on the fd from ``-ipcfd N`` until the parent goes away."""
    if len(sys.argv) != 3 or sys.argv[1] != "-ipcfd":
        sys.exit(f"usage: {sys.argv[0]} -ipcfd <fd>")
    sock = socket.socket(fileno=int(sys.argv[2]))
    # stdout carries results; logs go to stderr, warnings only.
    log.configure(json=True, stream=sys.stderr, level=logging.WARNING)
    protocol = make_protocol()
    init: Init = ProbeInit(int(os.environ.get(CALLS_ENV, "0")),
                           int(os.environ.get(BATCHES_ENV, "0")),
                           int(os.environ.get(IN_FLIGHT_ENV, "0")))
    inbox = IntroInbox.from_env()

    async def serve() -> None:
        served = init
        if inbox is not None:  # launched with an introduction channel: take direct links
            inbox.start()
            served = IntroducingInit(init, inbox, protocol, name="bench-probe")
        await protocol.serve(sock, served, name="bench-probe")
    protocol.run(serve)


if __name__ == "__main__":
    main()
