"""Delivering blocks to one consumer's ChainNotifications without ever waiting on it.

Mining hands each new block to every receiver's bounded queue and moves on; a task per
receiver calls ``block_connected`` one block at a time. A call that misses the consumer's
deadline marks it lagging (logged, and mining stops waiting for it); blocks that arrive
beyond the queue's depth are coalesced into the newest (logged), which is enough
because a receiver catches up on missed heights through ``Chain.get_block``. So a
frozen or hostile receiver costs the node at most one outstanding call and a queue of
``notify_queue_depth`` blocks, however long it stays away.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

from bitcoin_supervisor.interfaces import Block, ChainLimits, ChainNotifications, PeerGoneError


class Receiver:
    """One registration of one consumer's notifications. Use on one event loop.

    ``on_gone`` is called (once) when the receiver's link turned out to be broken.
    """

    def __init__(self, consumer: str, registration: int, notifications: ChainNotifications,
                 limits: ChainLimits, logger: Any, on_gone: Any) -> None:
        self.consumer = consumer
        self.registration = registration
        self._notifications = notifications
        self._depth = max(1, limits.notify_queue_depth)
        self._deadline_s = max(1, limits.notify_deadline_ms) / 1000
        self._queue: collections.deque[Block] = collections.deque()
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self.delivered = -1  # height of the last block the receiver returned from
        self.offered = -1  # height of the last block queued for it
        self.lagging = False  # a call missed the deadline and the receiver is still behind
        self.lagging_since: float | None = None  # monotonic, while lagging
        self._coalescing = False
        self.coalesced = 0  # blocks it was never told about (it catches up on them)
        self._log = logger
        self._on_gone = on_gone
        self._task = asyncio.create_task(self._run(), name=f"notify-{consumer}")

    def offer(self, block: Block) -> None:
        """Queue ``block`` for the receiver. Never waits; the queue never grows past the
        consumer's ``notify_queue_depth``."""
        if len(self._queue) >= self._depth:
            if not self._coalescing:
                self._coalescing = True  # logged once per episode: blocks come in bursts
                self._log.info("notifications.coalesced", consumer=self.consumer,
                               registration=self.registration, height=block.height,
                               queue_depth=self._depth)
            self.coalesced += len(self._queue)
            self._queue.clear()
        self._queue.append(block)
        self.offered = block.height
        self._wake.set()

    async def wait_delivered(self, height: int) -> bool:
        """Wait until the receiver has processed ``height`` (True), or until it is
        lagging or its deadline passed (False). Returns at once for a lagging receiver."""
        async def reached() -> None:
            async with self._progress:
                await self._progress.wait_for(lambda: self.delivered >= height or self.lagging)
        try:
            await asyncio.wait_for(reached(), timeout=self._deadline_s)
        except TimeoutError:
            return False
        return self.delivered >= height

    async def close(self) -> None:
        """Stop delivering (the call in flight is cancelled). Idempotent."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def _mark_lagging(self, why: str, height: int) -> None:
        if not self.lagging:
            self.lagging = True
            self.lagging_since = time.monotonic()
            self._log.warning("notifications.lagging", consumer=self.consumer,
                              registration=self.registration, reason=why, height=height,
                              delivered=self.delivered,
                              deadline_s=self._deadline_s, queue_depth=self._depth)
            asyncio.get_running_loop().create_task(self._announce())

    async def _announce(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._queue:
                self._wake.clear()
                continue
            block = self._queue.popleft()
            call = asyncio.ensure_future(self._notifications.block_connected(block))
            try:
                done, _ = await asyncio.wait({call}, timeout=self._deadline_s)
                if not done:
                    self._mark_lagging("deadline missed", block.height)
                    # One call stays outstanding, never a second: newer blocks wait
                    # (bounded) until this one returns, however long that takes.
                    await asyncio.wait({call})
            except asyncio.CancelledError:
                call.cancel()
                raise
            try:
                call.result()
            except PeerGoneError as exc:
                self._log.warning("notifications.gone", consumer=self.consumer,
                                  registration=self.registration, height=block.height,
                                  error=str(exc))
                self._on_gone()
                return
            except Exception as exc:  # noqa: BLE001 - a bad receiver must not stop delivery
                self._log.error("notification.failed", consumer=self.consumer,
                                registration=self.registration, height=block.height,
                                error=str(exc), error_type=type(exc).__name__)
            self.delivered = max(self.delivered, block.height)
            if not self._queue:
                self._coalescing = False
            if self.lagging and not self._queue and self.delivered >= self.offered:
                self.lagging = False
                self.lagging_since = None
                self._log.info("notifications.caught_up", consumer=self.consumer,
                               registration=self.registration, height=self.delivered,
                               coalesced=self.coalesced)
            async with self._progress:
                self._progress.notify_all()
