"""The node's active chain: block index over the block store, mining, notifications, RPC routes."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from bitcoin.core import b2lx, lx
from bitcoin.core.script import CScript

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import (
    Block,
    BlockRef,
    Chain,
    ChainGrant,
    ChainLimits,
    ChainNotifications,
    ConsumerHealth,
    Handler,
    LimitExceededError,
    PeerGoneError,
    RpcHandler,
    RpcNameOwnedError,
    RpcRequest,
    RpcResponse,
)

from . import _consensus as consensus
from ._blockstore import BlockStore, StoredBlock
from ._consumers import Budget, ConsumerChain, Registration, Route, RouteTable
from ._receivers import Receiver

LOCAL = "local"  # the consumer name of in-process users of NodeChain itself

_T = TypeVar("_T")
_BATCH = 64  # blocks mined per executor job: one fsync each, and the loop stays responsive


class NodeChain(Chain):
    """A regtest chain persisted in a BlockStore. Use on one event loop.

    Its own ``handle_*`` methods are for code in the node's process; every other
    component gets a ``ConsumerChain`` minted by ``mint``.
    """

    def __init__(self, store: BlockStore, entries: list[StoredBlock],
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._entries: list[StoredBlock] = []
        self._heights: dict[bytes, int] = {}
        self._work: list[int] = []
        self._clock = clock
        self._mine_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._receivers: dict[int, Receiver] = {}
        self._log = log.get_logger(subsystem="chain")
        self.routes = RouteTable(self._log)
        self._local = Budget(LOCAL, 1 << 30, 1 << 40)
        # One worker: mining and disk writes are sequential anyway, and aclose() can wait
        # for the job in flight even if the RPC request that started it was cancelled.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="node-miner")
        self._job: Future[Any] | None = None
        # Set (and replaced) whenever the tip moves: what waitTipChanged callers await.
        self._tip_moved = asyncio.Event()
        self._extend(entries)

    @classmethod
    def open(cls, blocks_dir: Path) -> NodeChain:
        """Load (or create) the chain stored under ``blocks_dir``. Blocking.

        Raises BlockStoreError or OSError as ``BlockStore.open`` does.
        """
        started = time.perf_counter()
        store, entries = BlockStore.open(blocks_dir)
        chain = cls(store, entries)
        chain._log.info("chain.loaded", height=chain.height, tip=chain.hash_hex(chain.height),
                        seconds=round(time.perf_counter() - started, 3))
        return chain

    def _extend(self, entries: list[StoredBlock]) -> None:
        for entry in entries:
            previous = self._work[-1] if self._work else 0
            self._heights[entry.hash] = len(self._entries)
            self._entries.append(entry)
            self._work.append(previous + consensus.block_work(entry.bits))

    # --- synchronous queries (used by the RPC methods; never block on I/O but one pread) ---

    @property
    def height(self) -> int:
        """Height of the tip (0 on a fresh chain)."""
        return len(self._entries) - 1

    def entry(self, height: int) -> StoredBlock:
        """Return the index entry at ``height``; IndexError if out of range."""
        if height < 0:
            raise IndexError(height)
        return self._entries[height]

    def hash_hex(self, height: int) -> str:
        """Return the display (big-endian hex) hash at ``height``; IndexError if out of range."""
        return str(b2lx(self.entry(height).hash))

    def height_of(self, block_hash: str) -> int | None:
        """Return the height of the active-chain block with display hash ``block_hash``."""
        try:
            return self._heights.get(lx(block_hash))
        except ValueError:
            return None

    def median_time(self, height: int) -> int:
        """Return the median time past of the block at ``height`` (itself and 10 before)."""
        start = max(0, height - consensus.MEDIAN_TIME_SPAN + 1)
        return consensus.median_time_past([e.time for e in self._entries[start:height + 1]])

    def chainwork(self, height: int) -> int:
        """Return the total work of the chain up to and including ``height``."""
        return self._work[height]

    def read_raw(self, height: int) -> bytes:
        """Return the serialized block at ``height``; IndexError if out of range."""
        return self._store.read(self.entry(height))

    def size_on_disk(self) -> int:
        """Return the bytes the block file occupies."""
        return self._store.size_on_disk()

    async def wait_tip_changed(self, current_tip: str, timeout_s: float | None) -> BlockRef:
        """Return the tip once its hash differs from ``current_tip`` (display hex), or
        after ``timeout_s`` seconds (None: no limit) with the tip as it is then. Returns
        at once when it differs already. Waits on an event, never blocking the loop."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + max(0.0, timeout_s)
        while self.hash_hex(self.height) == current_tip:
            moved = self._tip_moved
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                break
            try:
                await asyncio.wait_for(moved.wait(), left)
            except TimeoutError:
                break
        return await self.get_tip()

    def close(self) -> None:
        """Flush and close the block store. Idempotent. Use ``aclose`` while mining may run."""
        self._executor.shutdown(wait=True)
        self._store.close()

    async def aclose(self) -> None:
        """Stop notifying, wait for a mining or disk job still in flight, then close.
        Idempotent."""
        receivers, self._receivers = list(self._receivers.values()), {}
        for receiver in receivers:
            await receiver.close()
        job = self._job
        if job is not None and not job.done():
            await asyncio.wait([asyncio.wrap_future(job)])
        self.close()

    async def _in_worker(self, fn: Callable[..., _T], *args: object) -> _T:
        job = self._executor.submit(fn, *args)
        self._job = job
        return await asyncio.wrap_future(job)

    # --- interfaces.Chain ---

    async def get_tip(self) -> BlockRef:
        """Return the current tip."""
        return BlockRef(self.height, self.hash_hex(self.height))

    async def get_block_hash(self, height: int) -> str | None:
        """Return the hash at ``height``, or None outside the chain."""
        return self.hash_hex(height) if 0 <= height <= self.height else None

    async def get_block(self, height: int) -> Block | None:
        """Return the block at ``height`` with its serialized bytes, or None outside the chain."""
        if not 0 <= height <= self.height:
            return None
        return Block(height, self.hash_hex(height), self.read_raw(height))

    async def handle_notifications(self, notifications: ChainNotifications) -> Handler:
        """Deliver every block connected from now on to ``notifications``, in order
        (in-process use: default limits, consumer name ``local``)."""
        registration = self.add_receiver(LOCAL, notifications, ChainLimits())
        return Registration(lambda: self.drop_receiver(registration, "disconnected"))

    async def handle_rpc(self, methods: list[str], handler: RpcHandler) -> Handler:
        """Route ``methods`` to ``handler`` (in-process use: any name no component owns);
        replaces earlier routes of the same names. RpcNameOwnedError for an owned name."""
        for name in methods:
            owner = self.routes.owner(name)
            if owner is not None and owner != LOCAL:
                self.routes.refused(LOCAL, name, "owned", owner)
                raise RpcNameOwnedError(f"{name} is owned by {owner}")
        registration = self.add_routes(
            Route(LOCAL, self.next_registration(), handler, self._local), methods)
        return Registration(lambda: self.drop_routes(registration, "disconnected"))

    # --- consumers ---

    def reserve(self, names: Iterable[str]) -> None:
        """Make ``names`` (the node's own RPC methods) unavailable to every consumer."""
        self.routes.reserve(names)

    def mint(self, grant: ChainGrant) -> ConsumerChain:
        """Return a Chain for ``grant.consumer``, which becomes the only component that may
        register ``grant.rpc_methods`` (until a later grant to it says otherwise).
        RpcNameOwnedError, logged, when another component owns one of them."""
        self.routes.grant(grant.consumer, grant.rpc_methods)
        self.routes.expect(grant.owned_elsewhere)
        self._log.info("chain.minted", consumer=grant.consumer,
                       rpc_methods=len(grant.rpc_methods))
        return ConsumerChain(self, grant)

    def next_registration(self) -> int:
        """A fresh registration number."""
        return next(self._ids)

    def add_receiver(self, consumer: str, notifications: ChainNotifications,
                     limits: ChainLimits) -> int:
        """Start delivering blocks to ``notifications``; return the registration."""
        registration = self.next_registration()
        self._receivers[registration] = Receiver(
            consumer, registration, notifications, limits, self._log,
            lambda: self.drop_receiver(registration, "peer gone"))
        self._log.info("notifications.registered", consumer=consumer,
                       registration=registration)
        return registration

    def add_routes(self, route: Route, methods: list[str]) -> int:
        """Route ``methods`` to ``route`` (the caller checked ownership); return its
        registration."""
        self.routes.add(route, methods)
        self._log.info("rpc_methods.registered", consumer=route.consumer,
                       registration=route.registration, methods=methods)
        return route.registration

    def drop_receiver(self, registration: int, reason: str) -> None:
        """Stop delivering to ``registration``. Idempotent."""
        receiver = self._receivers.pop(registration, None)
        if receiver is not None:
            asyncio.get_running_loop().create_task(receiver.close())
            self._log.info("notifications.removed", consumer=receiver.consumer,
                           registration=registration, reason=reason)

    def drop_routes(self, registration: int, reason: str) -> None:
        """Remove the routes of ``registration``. Idempotent."""
        gone = self.routes.drop(registration)
        if gone:
            self._log.info("rpc_methods.removed", registration=registration, methods=gone,
                           reason=reason)

    def consumer_health(self) -> tuple[ConsumerHealth, ...]:
        """Per consumer with receivers: lagging (any of its receivers is) and for how
        long (its longest-lagging receiver)."""
        since: dict[str, float | None] = {}
        for r in self._receivers.values():
            was = since.get(r.consumer)
            now = r.lagging_since
            since[r.consumer] = now if was is None else was if now is None else min(was, now)
        clock = time.monotonic()
        return tuple(ConsumerHealth(name, t is not None, 0.0 if t is None else clock - t)
                     for name, t in sorted(since.items()))

    def lagging(self) -> list[str]:
        """The consumers whose notifications are behind (missed a deadline or overflowed)."""
        return sorted({r.consumer for r in self._receivers.values() if r.lagging})

    # --- forwarded RPC ---

    def routed_methods(self) -> list[str]:
        """Return the method names other components registered, sorted."""
        return self.routes.names()

    async def forward(self, request: RpcRequest) -> RpcResponse | None:
        """Run ``request`` on the handler registered for its method.

        Returns None when no handler has the method, including when its handler just
        turned out to be gone (its routes are then removed). Raises RemoteError when the
        handler's code raised, LimitExceededError when its component has too many
        calls in flight or answered with more than its message size.
        """
        route = self.routes.get(request.method)
        if route is None:
            return None
        try:
            with route.budget.call(request.method):
                response = await route.handler.execute(request)
        except PeerGoneError as exc:
            self._log.warning("rpc_handler.gone", registration=route.registration,
                              method=request.method, error=str(exc))
            self.drop_routes(route.registration, "peer gone")
            return None
        except LimitExceededError as exc:
            self._log.warning("rpc_forward.refused", consumer=route.consumer,
                              method=request.method, error=str(exc))
            raise
        size = len(response.result_json) + len(response.error_message)
        if size > route.budget.max_message_bytes:
            self._log.warning("rpc_forward.refused", consumer=route.consumer,
                              method=request.method, error="response too large", size=size)
            raise LimitExceededError(f"{route.consumer} answered {request.method} with "
                                     f"{size} bytes (limit {route.budget.max_message_bytes})")
        return response

    # --- mining ---

    async def generate_to_address(self, nblocks: int, script_pubkey: CScript,
                                  max_tries: int = 1_000_000) -> list[str]:
        """Mine up to ``nblocks`` coinbase-only blocks paying ``script_pubkey``.

        Returns their hashes once each is on disk and every receiver that keeps up has
        processed them; a receiver is waited for at most its own deadline, and never
        while it is lagging. Fewer blocks come back if ``max_tries`` nonces run out. The
        hashing and the fsync run in a worker thread. Raises OSError if the disk write
        fails.
        """
        hashes: list[str] = []
        await self._mine(nblocks, script_pubkey, max_tries, hashes)
        last = self.height_of(hashes[-1]) if hashes else None
        if last is not None:
            # Outside the mining lock: a slow receiver never holds up the next miner.
            await self._wait_receivers(last)
        return hashes

    async def _mine(self, nblocks: int, script_pubkey: CScript, max_tries: int,
                    hashes: list[str]) -> None:
        async with self._mine_lock:
            while len(hashes) < nblocks and max_tries > 0:
                count = min(_BATCH, nblocks - len(hashes))
                times = [e.time for e in self._entries[-consensus.MEDIAN_TIME_SPAN:]]
                mined, max_tries = await self._in_worker(
                    _mine_batch, self.height + 1, self._entries[-1].hash, times,
                    script_pubkey, count, max_tries, int(self._clock()))
                if not mined:
                    break
                entries = await self._in_worker(self._store.append, mined)
                first = self.height + 1
                self._extend(entries)
                moved, self._tip_moved = self._tip_moved, asyncio.Event()
                moved.set()
                for offset, block in enumerate(mined):
                    hashes.append(b2lx(block.hash))
                    self._notify(Block(first + offset, hashes[-1], block.raw))

    def _notify(self, block: Block) -> None:
        for receiver in list(self._receivers.values()):
            receiver.offer(block)

    async def _wait_receivers(self, height: int) -> None:
        receivers = list(self._receivers.values())
        if receivers:
            await asyncio.gather(*(r.wait_delivered(height) for r in receivers))


def _mine_batch(height: int, prev_hash: bytes, times: list[int], script_pubkey: CScript,
                count: int, max_tries: int, now: int,
                ) -> tuple[list[consensus.MinedBlock], int]:
    """Mine up to ``count`` blocks on ``prev_hash``; return them and the tries left. Blocking."""
    mined: list[consensus.MinedBlock] = []
    times = list(times)
    for offset in range(count):
        block_time = max(now, consensus.median_time_past(times) + 1)
        block = consensus.mine_block(height + offset, prev_hash, block_time, script_pubkey,
                                     max_tries)
        if block is None:
            return mined, 0
        max_tries -= block.nonce + 1
        mined.append(block)
        prev_hash = block.hash
        times.append(block_time)
    return mined, max_tries
