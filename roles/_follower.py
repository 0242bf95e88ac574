"""Following the node's active chain through a ``Chain`` capability, block by block.

Shared by the wallet and the index: both keep derived state per block in SQLite and must
end up exactly at the node's tip whatever happened meanwhile (missed notifications, a
node restarted with another chain, a link that broke mid-sync).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import bitcoin
from bitcoin.core import CBlock, b2lx
from bitcoin.core.serialize import SerializationError

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import (
    Block,
    BlockRef,
    CapabilityRefusedError,
    Chain,
    ChainNotifications,
    Handler,
    IpcError,
    PeerGoneError,
    RemoteError,
    RpcHandler,
)

from ._diskfull import is_disk_full

bitcoin.SelectParams("regtest")

# After a write failed on a full datadir, the pass is tried again after this long,
# doubling up to the cap: space comes back by someone's action, which sends no event.
DISK_RETRY_FIRST_S = 0.25
DISK_RETRY_MAX_S = 5.0


class BlockStore(Protocol):
    """Per-block state a ``ChainFollower`` keeps in step with the chain."""

    def last_block(self) -> BlockRef | None:
        """Return the last connected block, or None before any."""
        ...

    def block_hash(self, height: int) -> str | None:
        """Return the hash recorded for ``height``, or None if none is recorded."""
        ...

    def connect_block(self, block: Block, parsed: CBlock) -> None:
        """Apply ``block`` (the child of ``last_block()``) and record it as the last
        block, atomically and durably."""
        ...

    def rewind(self, height: int) -> None:
        """Undo every block above ``height`` (-1: all of them), atomically and durably."""
        ...


class InvalidBlockError(ValueError):
    """The chain handed over bytes that are not the block it claims."""


def parse_block(block: Block) -> CBlock:
    """Deserialize ``block.raw``; raises InvalidBlockError if it is malformed or its
    hash is not ``block.hash``."""
    try:
        parsed = CBlock.deserialize(block.raw)
    except (SerializationError, ValueError, IndexError) as exc:
        raise InvalidBlockError(f"block {block.height} does not deserialize: {exc}") from exc
    if b2lx(parsed.GetHash()) != block.hash:
        raise InvalidBlockError(f"block {block.height} does not hash to {block.hash}")
    return parsed


class ChainFollower:
    """Keeps one ``BlockStore`` at the tip of whichever ``Chain`` was attached last.

    All syncing is serialized by one lock, so blocks are applied strictly in order
    whatever mix of notifications and attaches triggers it. Link failures are logged
    (``chain.lost``) and end the current pass; they never propagate.
    """

    def __init__(self, store: BlockStore, *, component: str, subject: str) -> None:
        self._store = store
        self._lock = asyncio.Lock()
        self._chain: Chain | None = None
        self._handler: Handler | None = None
        self._generation = 0
        self._synced = False
        self._catch_up_task: asyncio.Task[None] | None = None
        self._retry_task: asyncio.Task[None] | None = None
        self.disk_full = False  # the last pass could not write: the datadir is full
        self._log = log.get_logger(component=component, subject=subject)

    @property
    def chain(self) -> Chain | None:
        """The chain being followed, or None before an attach or after it was lost."""
        return self._chain

    @property
    def synced(self) -> bool:
        """True when the last sync pass reached the chain's tip."""
        return self._synced

    async def attach(self, chain: Chain) -> None:
        """Follow ``chain`` from now on, replacing any earlier chain.

        Registers for notifications and returns: attached is not synced. The catch-up to
        the tip runs in the background (``caught_up()`` waits for it; ``synced`` says
        when it got there), so a long catch-up never holds up whoever attached us.
        Never raises IpcError (a lost link is logged).
        """
        self._generation += 1
        generation = self._generation
        old, self._handler = self._handler, None
        self._chain = chain
        self._synced = False
        await disconnect_quietly(old)
        try:
            handler = await chain.handle_notifications(_Notifications(self, generation))
        except IpcError as exc:
            self._lost(chain, exc)
            return
        if generation != self._generation:
            await disconnect_quietly(handler)  # another attach won the race
            return
        self._handler = handler
        self._catch_up_task = asyncio.create_task(self._background_sync(generation),
                                                  name="catch-up")

    async def caught_up(self) -> None:
        """Return once the catch-up started by the last attach has ended (at the tip, or
        failed: logged); at once if none runs. Never raises; cancelling the wait leaves
        the catch-up running."""
        task = self._catch_up_task
        if task is not None and not task.done():
            await asyncio.wait({task})

    async def _background_sync(self, generation: int) -> None:
        try:
            await self.sync(generation=generation)
        except Exception as exc:  # noqa: BLE001 - a background task's boundary: log, not lose
            # A store that cannot write (disk full, I/O error) leaves us behind the tip:
            # loud here and visible as "not synced", instead of a silent stale state.
            self._synced = False
            self._log.error("chain.sync_failed", error=str(exc), error_type=type(exc).__name__)

    async def detach(self) -> None:
        """Stop following: cancel the notifications, forget the chain. Never raises."""
        self._generation += 1
        handler, self._handler = self._handler, None
        self._chain = None
        self._synced = False
        await disconnect_quietly(handler)

    def forget(self) -> None:
        """Stop following without any remote call (for shutdown, when the link may be
        gone); a pass in progress stops before its next block."""
        for task in (self._catch_up_task, self._retry_task):
            if task is not None:
                task.cancel()
        self._generation += 1
        self._handler = None
        self._chain = None
        self._synced = False

    async def sync(self, hint: Block | None = None, generation: int | None = None) -> None:
        """Bring the store to the current chain's tip (no-op without a chain).

        ``hint`` is a block the chain just announced; it is applied without a round
        trip when it extends the store. With ``generation`` (the attach it came from),
        nothing happens if another chain was attached meanwhile. Returns when done or
        when the pass failed.
        """
        async with self._lock:
            chain = self._chain
            if chain is None or generation not in (None, self._generation):
                return
            try:
                if hint is None or not self._apply_hint(hint):
                    await self._catch_up(chain)
            except PeerGoneError as exc:
                self._lost(chain, exc)
            except RemoteError as exc:
                self._synced = False
                self._log.warning("chain.failed", error=str(exc))
            except InvalidBlockError as exc:
                self._synced = False
                self._log.error("block.rejected", error=str(exc))
            except Exception as exc:
                if not is_disk_full(exc):
                    raise
                self._full(exc)
            else:
                if self.disk_full:
                    self.disk_full = False
                    self._log.info("block.write_recovered", last=self._last_height())

    def _full(self, exc: BaseException) -> None:
        """A block could not be written: behind the tip, and saying so; the pass is
        retried in the background until space returns."""
        self._synced = False
        if not self.disk_full:
            self.disk_full = True
            self._log.error("block.write_failed", why="disk full", error=str(exc),
                            last=self._last_height())
        if self._retry_task is None or self._retry_task.done():
            self._retry_task = asyncio.create_task(self._retry(self._generation),
                                                   name="disk-full-retry")

    async def _retry(self, generation: int) -> None:
        delay = DISK_RETRY_FIRST_S
        while self.disk_full and generation == self._generation:
            await asyncio.sleep(delay)
            delay = min(delay * 2, DISK_RETRY_MAX_S)
            # A pass that fails again comes back to _full, which sees this task
            # still running and starts no other.
            await self.sync(generation=generation)

    def _last_height(self) -> int | None:
        last = self._store.last_block()
        return None if last is None else last.height

    def _apply_hint(self, hint: Block) -> bool:
        """Apply or skip ``hint`` locally; False when a full catch-up is needed."""
        last = self._store.last_block()
        if last is not None and hint.height <= last.height:
            return self._store.block_hash(hint.height) == hint.hash  # already have it
        if hint.height != (0 if last is None else last.height + 1):
            return False
        parsed = parse_block(hint)
        if last is not None and b2lx(parsed.hashPrevBlock) != last.hash:
            return False
        self._store.connect_block(hint, parsed)
        self._synced = True
        return True

    async def _catch_up(self, chain: Chain) -> None:
        await self._rewind_to_fork(chain)
        while True:
            last = self._store.last_block()
            block = await chain.get_block(0 if last is None else last.height + 1)
            if chain is not self._chain:
                return  # replaced or forgotten while we waited; its owner syncs
            if block is None:
                self._synced = True
                return
            parsed = parse_block(block)
            if last is not None and b2lx(parsed.hashPrevBlock) != last.hash:
                await self._rewind_to_fork(chain)  # the chain changed under us
                continue
            self._store.connect_block(block, parsed)

    async def _rewind_to_fork(self, chain: Chain) -> None:
        last = self._store.last_block()
        if last is None or await chain.get_block_hash(last.height) == last.hash:
            return
        # Invariant: heights <= low match the chain (-1: none known), high does not.
        low, high = -1, last.height
        while high - low > 1:
            mid = (low + high) // 2
            mine = self._store.block_hash(mid)
            if mine is not None and mine == await chain.get_block_hash(mid):
                low = mid
            else:
                high = mid
        self._store.rewind(low)
        self._log.info("block.rewound", from_height=last.height, to_height=low)

    def _lost(self, chain: Chain, exc: IpcError) -> None:
        self._synced = False
        if self._chain is chain:
            self._chain = None
            self._handler = None
        self._log.warning("chain.lost", error=str(exc))


class _Notifications(ChainNotifications):
    """Notifications for one attach; calls from a replaced chain are ignored."""

    def __init__(self, follower: ChainFollower, generation: int) -> None:
        self._follower = follower
        self._generation = generation

    async def block_connected(self, block: Block) -> None:
        """Apply ``block`` (and anything missed before it); returns once applied."""
        await self._follower.sync(hint=block, generation=self._generation)

    async def block_disconnected(self, block: Block) -> None:
        """Re-sync, which rewinds to the new fork point; returns once done."""
        await self._follower.sync(generation=self._generation)


async def disconnect_quietly(handler: Handler | None) -> None:
    """Cancel ``handler`` if any; a link that is already gone is not an error."""
    if handler is None:
        return
    try:
        await handler.disconnect()
    except IpcError:
        pass  # the registration died with the link


async def register_rpc(chain: Chain, methods: list[str], handler: RpcHandler,
                       previous: Handler | None, logger: Any) -> Handler | None:
    """Register ``methods`` with ``chain`` after cancelling ``previous``.

    Returns the new registration, or None (logged as ``chain.lost``) when the chain's
    link is gone. Never raises IpcError.
    """
    await disconnect_quietly(previous)
    try:
        registration = await chain.handle_rpc(methods, handler)
    except CapabilityRefusedError as exc:
        # The node refused (names another component owns, or not granted to us): the
        # chain is fine, this component just serves no RPC names there.
        logger.warning("rpc.refused", error=str(exc), methods=len(methods))
        return None
    except IpcError as exc:
        logger.warning("chain.lost", error=str(exc), during="handle_rpc")
        return None
    logger.info("rpc.registered", methods=len(methods))
    return registration
