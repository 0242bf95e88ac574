"""One Chain per consumer: the node's chain as one consumer may see and use it.

The supervisor never hands the node's chain itself to a wallet or an index: it asks the
node to mint one (``Init.make_chain(grant)``) for each consumer, carrying that
consumer's name, the RPC names only it may register and its limits. The node keeps who
owns which RPC name in one ``RouteTable``, keyed by consumer name, so a restarted
consumer finds its names waiting for it and nobody else can take them meanwhile.
"""

from __future__ import annotations

import contextlib
import string
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bitcoin_supervisor.interfaces import (
    Block,
    BlockRef,
    Chain,
    ChainGrant,
    ChainNotifications,
    Handler,
    InvalidArgumentError,
    LimitExceededError,
    RpcHandler,
    RpcNameNotAllowedError,
    RpcNameOwnedError,
)

if TYPE_CHECKING:
    from ._chain import NodeChain

NODE = "node"  # the owner of the node's own RPC methods
_LOGGED = 20  # refusals logged per consumer and window; the rest are counted
_WINDOW_S = 60.0
_NAME_CHARS = frozenset(string.ascii_lowercase + string.digits + "_")


class Registration(Handler):
    """A Handler whose disconnect runs ``cancel`` once."""

    def __init__(self, cancel: Callable[[], None]) -> None:
        self._cancel: Callable[[], None] | None = cancel

    async def disconnect(self) -> None:
        """Cancel the registration. Idempotent."""
        cancel, self._cancel = self._cancel, None
        if cancel is not None:
            cancel()


class Budget:
    """What one consumer has in flight at the node, against its limits."""

    def __init__(self, consumer: str, max_in_flight: int, max_message_bytes: int) -> None:
        self.consumer = consumer
        self.max_in_flight = max_in_flight
        self.max_message_bytes = max_message_bytes
        self.in_flight = 0

    @contextlib.contextmanager
    def call(self, what: str) -> Iterator[None]:
        """Count one call for its duration; LimitExceededError when the consumer already
        has ``max_in_flight`` calls running (refused, never queued)."""
        if self.in_flight >= self.max_in_flight:
            raise LimitExceededError(f"{self.consumer} has {self.in_flight} calls in flight "
                                     f"(limit {self.max_in_flight}); {what} refused")
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


@dataclass(frozen=True)
class Route:
    consumer: str
    registration: int
    handler: RpcHandler
    budget: Budget


class RouteTable:
    """RPC name -> owner (granted, lasting across the owner's restarts) and the handler
    that currently serves it (registered, gone with its registration)."""

    def __init__(self, logger: Any) -> None:
        self._owners: dict[str, str] = {}
        # What the supervisor says other consumers own (their grants), before or after
        # their Chains are minted: refusals name the owner whatever the minting order.
        self._expected: dict[str, str] = {}
        self._routes: dict[str, Route] = {}
        self._log = logger
        # consumer -> (window start, refusals logged, refusals only counted)
        self._refusals: dict[str, tuple[float, int, int]] = {}

    def reserve(self, names: Iterable[str]) -> None:
        """Make ``names`` the node's own: no consumer can be granted or register them."""
        for name in names:
            self._owners[name] = NODE

    def owner(self, name: str) -> str | None:
        """The component that owns ``name`` (granted here, or in the supervisor's grants
        to another consumer), or None."""
        return self._owners.get(name) or self._expected.get(name)

    def expect(self, owners: Iterable[tuple[str, str]]) -> None:
        """Record (name, owner) pairs the supervisor granted to other consumers; the
        latest grant's view replaces what an earlier one said about the same names."""
        for name, owner in owners:
            if self._owners.get(name) != NODE:
                self._expected[name] = owner

    def grant(self, consumer: str, names: Iterable[str]) -> None:
        """Make ``names`` ``consumer``'s (and only those: names it held before and
        ``names`` lacks are released). RpcNameOwnedError, and nothing changes, when one
        of them belongs to someone else."""
        wanted = set(names)
        for name in sorted(wanted):
            owner = self._owners.get(name, consumer)
            if owner != consumer:
                self.refused(consumer, name, "owned", owner)
                raise RpcNameOwnedError(f"{name} is owned by {owner}; not granted to "
                                        f"{consumer}")
        for name in [n for n, o in self._owners.items() if o == consumer and n not in wanted]:
            del self._owners[name]
        for name in wanted:
            self._owners[name] = consumer

    def refused(self, consumer: str, name: str, reason: str, owner: str | None = None) -> None:
        """Log one refused registration (``rpc_name.refused``); past ``_LOGGED`` per
        consumer and minute, only counted (a refusal flood must not become a log flood)."""
        now = time.monotonic()
        start, logged, hidden = self._refusals.get(consumer, (now, 0, 0))
        if now - start >= _WINDOW_S:
            if hidden:
                self._log.warning("rpc_name.refusals_suppressed", consumer=consumer,
                                  count=hidden, seconds=round(now - start, 1))
            start, logged, hidden = now, 0, 0
        if logged < _LOGGED:
            self._log.warning("rpc_name.refused", consumer=consumer, method=name[:80],
                              reason=reason, owner=owner)
            logged += 1
        else:
            hidden += 1
        self._refusals[consumer] = (start, logged, hidden)

    def add(self, route: Route, names: Iterable[str]) -> None:
        """Route ``names`` (each owned by ``route.consumer`` or by no one) to ``route``.

        Names belong to a consumer, not to one of its processes: a newer registration of
        the same consumer replaces the routes of an older one (its new process, e.g. a
        promoted standby, whose old process the node may not have seen die yet; the
        supervisor promotes only once it is gone), so each name has one live route.
        Another consumer never gets here with an owned name (``_check_name``)."""
        for name in names:
            assert self._owners.get(name, route.consumer) == route.consumer
            self._routes[name] = route

    def drop(self, registration: int) -> list[str]:
        """Remove the routes of ``registration``; return their names."""
        gone = [m for m, r in self._routes.items() if r.registration == registration]
        for name in gone:
            del self._routes[name]
        return gone

    def get(self, name: str) -> Route | None:
        """The route serving ``name``, or None."""
        return self._routes.get(name)

    def names(self) -> list[str]:
        """The routed names, sorted."""
        return sorted(self._routes)


class ConsumerChain(Chain):
    """The node's chain as minted for one consumer (``grant``). Use on the node's loop."""

    def __init__(self, node: NodeChain, grant: ChainGrant) -> None:
        self._node = node
        self.grant = grant
        limits = grant.limits
        self._allowed = frozenset(grant.rpc_methods)
        self._calls = Budget(grant.consumer, limits.max_calls_in_flight,
                             limits.max_message_bytes)
        # Node -> consumer RPC forwards are counted apart: a consumer that stops
        # answering fills its own budget, not the one its calls into the node use.
        self.forwards = Budget(grant.consumer, limits.max_calls_in_flight,
                               limits.max_message_bytes)
        self._live: set[int] = set()

    async def get_tip(self) -> BlockRef:
        """Return the current tip."""
        with self._calls.call("get_tip"):
            return await self._node.get_tip()

    async def get_block_hash(self, height: int) -> str | None:
        """Return the hash at ``height``; None above the tip; InvalidArgumentError below 0."""
        with self._calls.call("get_block_hash"):
            return await self._node.get_block_hash(_height(height))

    async def get_block(self, height: int) -> Block | None:
        """Return the block at ``height``; None above the tip; InvalidArgumentError below 0."""
        with self._calls.call("get_block"):
            return await self._node.get_block(_height(height))

    async def handle_notifications(self, notifications: ChainNotifications) -> Handler:
        """Deliver blocks connected from now on to ``notifications`` within this
        consumer's queue depth and deadline. LimitExceededError past its registrations."""
        with self._calls.call("handle_notifications"):
            self._admit()
            registration = self._node.add_receiver(self.grant.consumer, notifications,
                                                   self.grant.limits)
            return self._track(registration, self._node.drop_receiver)

    async def handle_rpc(self, methods: list[str], handler: RpcHandler) -> Handler:
        """Route ``methods`` to ``handler`` if this consumer may; see ``Chain.handle_rpc``
        for what is refused (each refusal is logged ``rpc_name.refused``)."""
        consumer, limits = self.grant.consumer, self.grant.limits
        table = self._node.routes
        with self._calls.call("handle_rpc"):
            if len(methods) > limits.max_rpc_names:
                table.refused(consumer, f"{len(methods)} names", "too many names")
                raise LimitExceededError(f"{len(methods)} names in one registration "
                                         f"(limit {limits.max_rpc_names})")
            for name in methods:
                self._check_name(name)
            self._admit()
            registration = self._node.add_routes(
                Route(consumer, self._node.next_registration(), handler, self.forwards),
                methods)
            return self._track(registration, self._node.drop_routes)

    def _check_name(self, name: str) -> None:
        consumer, limit = self.grant.consumer, self.grant.limits.max_name_length
        table = self._node.routes
        if not name or len(name) > limit or not set(name) <= _NAME_CHARS:
            table.refused(consumer, name, "malformed name")
            raise InvalidArgumentError(f"RPC name of {len(name)} characters must be 1-{limit} "
                                       "of a-z, 0-9, _")
        owner = table.owner(name)
        if owner is not None and owner != consumer:
            table.refused(consumer, name, "owned", owner)
            raise RpcNameOwnedError(f"{name} is owned by {owner}")
        if name not in self._allowed:
            table.refused(consumer, name, "not granted")
            raise RpcNameNotAllowedError(f"{name} is not an RPC name {consumer} may register")

    def _admit(self) -> None:
        limit = self.grant.limits.max_registrations
        if len(self._live) >= limit:
            self._node.routes.refused(self.grant.consumer, "-", "too many registrations")
            raise LimitExceededError(f"{self.grant.consumer} has {len(self._live)} live "
                                     f"registrations (limit {limit})")

    def _track(self, registration: int, drop: Callable[[int, str], None]) -> Handler:
        self._live.add(registration)

        def cancel() -> None:
            self._live.discard(registration)
            drop(registration, "disconnected")
        return Registration(cancel)


def _height(height: int) -> int:
    if height < 0:
        raise InvalidArgumentError(f"height {height} is negative")
    return height
