"""The capability graph as data: which capabilities exist, who serves and receives them.

A capability (``chain``) is obtained from its provider's ``Init`` and handed to each
consumer through a method of the consumer's ``Init`` that depends on what the consumer
is. Both are rows of ``CAPABILITIES``, so a new capability or a new kind of consumer is
one table entry, not a ``match`` on roles in the broker. The config validates against
this table; the broker executes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from bitcoin_supervisor.interfaces import Chain, ChainGrant, Handler, Index, Init, WalletLoader

__all__ = [
    "CAPABILITIES",
    "ROLE_CONSUMES",
    "ROLE_PROVIDES",
    "ROLE_RPC_METHODS",
    "Binding",
    "Capability",
    "CapabilityGraph",
    "default_providers",
]


@dataclass(frozen=True)
class Capability:
    """One capability kind. ``obtain`` asks a provider's Init to mint it for one
    consumer (identified and limited by its grant); ``hand`` maps a consumer role to the
    call that gives it to that consumer's Init."""

    name: str
    provided_by: tuple[str, ...]  # roles whose Init can serve it
    obtain: Callable[[Init, ChainGrant], Awaitable[Any]]
    hand: Mapping[str, Callable[[Init, Any], Awaitable[object]]]
    # consumer role -> (what ``hand`` returned, the capability) -> (height it has
    # processed or None, the provider's tip): how far a consumer has followed it.
    progress: Mapping[str, Callable[[Any, Any], Awaitable[tuple[int | None, int]]]] = field(
        default_factory=lambda: MappingProxyType({}))
    # Direct introduction: ``serve`` asks the provider to serve the capability minted
    # for a grant on an introduced channel (returning the Handler that revokes it);
    # ``connect`` asks the consumer for the capability at its end of the channel.
    # None: this capability is always forwarded.
    serve: Callable[[Init, ChainGrant, int], Awaitable[Handler]] | None = None
    connect: Callable[[Init, int], Awaitable[Any]] | None = None


async def _wallet_progress(loader: WalletLoader, chain: Chain) -> tuple[int | None, int]:
    """The lowest processed height among the loaded wallets (None: no wallet)."""
    heights: list[int] = []
    for name in await loader.list_wallets():
        wallet = await loader.get_wallet(name)
        last = None if wallet is None else await wallet.get_last_block()
        heights.append(-1 if last is None else last.height)
    return (min(heights) if heights else None), (await chain.get_tip()).height


async def _index_progress(index: Index, chain: Chain) -> tuple[int | None, int]:
    return (await index.get_info()).best_block_height, (await chain.get_tip()).height


CAPABILITIES: Mapping[str, Capability] = MappingProxyType({
    "chain": Capability(
        name="chain",
        provided_by=("node",),
        obtain=lambda init, grant: init.make_chain(grant),
        hand=MappingProxyType({
            "wallet": lambda init, chain: init.make_wallet_loader(chain),
            "index": lambda init, chain: init.make_index(chain),
        }),
        progress=MappingProxyType({"wallet": _wallet_progress, "index": _index_progress}),
        serve=lambda init, grant, channel: init.serve_chain(grant, channel),
        connect=lambda init, channel: init.connect_chain(channel),
    ),
})

# What a component of each role provides and consumes when its config says nothing.
ROLE_PROVIDES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"node": ("chain",), "wallet": (), "index": ()})
ROLE_CONSUMES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"node": (), "wallet": ("chain",), "index": ("chain",)})


# The JSON-RPC names a consumer of each role may register at its provider when its config
# says nothing (``rpc_methods``); tests/unit/test_grants.py checks them against the roles.
ROLE_RPC_METHODS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "wallet": ("createwallet", "getaddressinfo", "getbalance", "getbalances",
               "getnewaddress", "getwalletinfo", "listreceivedbyaddress", "listunspent",
               "listwallets", "loadwallet", "unloadwallet"),
    "index": ("getindexinfo", "getrawtransaction"),
})


@dataclass(frozen=True)
class Binding:
    """``consumer`` receives ``capability`` from the component ``provider``."""

    consumer: str
    capability: str
    provider: str


@dataclass(frozen=True)
class CapabilityGraph:
    """Who provides what and who receives it from whom: the broker's whole input.

    ``roles`` maps every component to its role (None: a foreign program, which
    provides and consumes nothing); ``provides`` maps a component to the capabilities
    it serves; ``bindings`` are resolved edges (each names exactly one provider);
    ``grants`` what each consumer's capabilities are minted with (identity, RPC names,
    limits; a consumer missing there gets its role's defaults).
    """

    roles: Mapping[str, str | None]
    provides: Mapping[str, tuple[str, ...]]
    bindings: tuple[Binding, ...]
    grants: Mapping[str, ChainGrant] = field(default_factory=lambda: MappingProxyType({}))

    def grant(self, consumer: str) -> ChainGrant:
        """What ``consumer``'s capabilities are minted with, including the RPC names the
        other consumers of its providers own (so its provider can name their owner
        before their own capabilities are minted)."""
        providers = {b.provider for b in self.needs(consumer)}
        elsewhere = sorted({(name, b.consumer) for b in self.bindings
                            if b.provider in providers and b.consumer != consumer
                            for name in self._own_grant(b.consumer).rpc_methods})
        return dataclasses.replace(self._own_grant(consumer),
                                   owned_elsewhere=tuple(elsewhere))

    def _own_grant(self, consumer: str) -> ChainGrant:
        found = self.grants.get(consumer)
        if found is not None:
            return found
        role = self.roles.get(consumer)
        return ChainGrant(consumer, ROLE_RPC_METHODS.get(role or "", ()))

    def needs(self, consumer: str) -> tuple[Binding, ...]:
        """The bindings through which ``consumer`` receives capabilities (file order)."""
        return tuple(b for b in self.bindings if b.consumer == consumer)

    def consumers(self, provider: str, capability: str) -> tuple[Binding, ...]:
        """The bindings that receive ``capability`` from ``provider``."""
        return tuple(b for b in self.bindings
                     if b.provider == provider and b.capability == capability)


def default_providers(role: str) -> dict[str, str]:
    """Capability -> provider for a component of ``role`` in a config whose components
    are named by role (the bundled one): what ``policy show`` and ``sandbox run`` assume."""
    return {cap: CAPABILITIES[cap].provided_by[0] for cap in ROLE_CONSUMES.get(role, ())}
