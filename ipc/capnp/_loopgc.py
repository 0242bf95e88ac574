"""Cyclic garbage collection on the KJ event-loop thread only.

A pycapnp object (a capability, a promise, a request) must be destroyed on the thread
that runs the KJ loop: freed anywhere else, KJ aborts the whole process ("expected loop
!= nullptr; No event loop is running on this thread"). Reference counting frees an object
where its last reference goes, and our code keeps capnp objects on the loop. CPython's
cyclic collector, though, runs on whichever thread allocates when a threshold is crossed
(the node's miner thread, an executor job) and frees every unreachable cycle from there,
such as the traceback cycle of a failed call that holds a dead peer's capability. That
killed the node 0.1-1.6 s after a wallet or index died.

So a collection that starts on another thread is emptied first: ``gc.freeze()`` moves
every tracked object out of its reach, and the loop unfreezes and collects them itself
a moment later (one full collection, however many foreign attempts came meanwhile).
Collections that start on the loop thread run as usual; an idle process never wakes up.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

# Long enough to merge the bursts of a busy worker thread into one full collection,
# short enough that the cycles it found cost little memory meanwhile.
DEFER_S = 0.25


class LoopCollector:
    """While installed, cyclic garbage is only ever freed on ``loop``'s thread.

    Create and ``install()`` on the loop's thread; ``uninstall()`` there too.
    ``deferred`` counts the collections moved from other threads to the loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, defer_s: float = DEFER_S) -> None:
        self._loop = loop
        self._thread = threading.get_ident()
        self._defer_s = defer_s
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self.deferred = 0

    def install(self) -> None:
        """Start watching collections. Idempotent."""
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        """Stop watching and collect what foreign threads left frozen. Idempotent."""
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._scheduled:
            self._collect()

    def _on_gc(self, phase: str, _info: dict[str, Any]) -> None:
        # Runs inside the collector, holding the GIL: only flags and one wake-up here.
        if phase != "start" or threading.get_ident() == self._thread:
            return
        gc.freeze()  # this collection (and any before the loop's) now sees no object
        self.deferred += 1
        if self._scheduled:
            return
        self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._arm)
        except RuntimeError:
            pass  # the loop is closed: the process is exiting, nothing to free safely

    def _arm(self) -> None:
        if self._scheduled and self._timer is None:
            self._timer = self._loop.call_later(self._defer_s, self._collect)

    def _collect(self) -> None:
        self._timer = None
        self._scheduled = False  # a foreign attempt from now on schedules the next one
        gc.unfreeze()
        gc.collect()
