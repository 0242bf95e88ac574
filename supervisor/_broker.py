"""Brokering: hand each consumer the capabilities of its own providers.

The broker executes the config's capability graph: a provider's capability (a node's
``Chain``) is minted by the provider for each consumer, carrying that consumer's name
and grant (the RPC names only it may register, its limits), and handed to that consumer
only, through the calls the capability table (``_capabilities.py``) names. No consumer
ever holds another's capability. When a provider comes back after a restart, each of
its attached consumers gets a freshly minted one through the same call, without being
restarted itself; consumers of other providers are not touched. A provider that refuses
to mint (a grant names an RPC name someone else owns) fails that consumer's hand-over.

Where both sides took an introduction channel at launch, the capability is introduced
directly (``_introduce``): the consumer then calls its provider over a socketpair of
their own and the supervisor is out of the data path; otherwise (a foreign program,
``introduce = false``) the calls are forwarded through the supervisor.

A consumer's warm standby is introduced in advance (``prepare``): its Chain is minted and
connected, but not handed over; ``promote`` hands it over once the running process is
gone, so a promotion costs one call instead of an introduction.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from bitcoin_supervisor.interfaces import (
    ConsumerHealth,
    Handler,
    Init,
    IpcError,
    NotProvidedError,
)
from bitcoin_supervisor.ipc import IntroSender
from bitcoin_supervisor.log import get_logger

from ._capabilities import CAPABILITIES, Binding, CapabilityGraph
from ._introduce import FORWARDED, INTRODUCED, introduce, revoke

__all__ = ["REBROKER_TIMEOUT_S", "Broker"]

log = get_logger()

REBROKER_TIMEOUT_S = 30.0


@dataclass
class _Slot:
    """One provider's Init that serves one capability (None while it is down)."""

    value: Init | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Prepared:
    """A capability obtained in advance for a standby: from which provider Init, what
    was minted, and how it travels (with the Handler revoking an introduced link)."""

    provider: Init
    minted: object
    path: str
    revoke: Handler | None


@dataclass
class _Standby:
    init: Init
    channel: IntroSender | None
    prepared: dict[str, _Prepared] = field(default_factory=dict)


@dataclass
class _Consumer:
    name: str
    role: str
    init: Init
    # Capabilities whose first hand-over attach() itself still does (and re-checks), so
    # a provider restart meanwhile need not hand them a second time.
    receiving: set[str] = field(default_factory=set)
    # What each hand-over call returned (a WalletLoader, an Index): progress reads it.
    received: dict[str, object] = field(default_factory=dict)
    # The capability minted for it, per capability (progress reads the provider's side).
    minted: dict[str, object] = field(default_factory=dict)
    # How each capability reaches it (INTRODUCED / FORWARDED), and the Handlers that
    # revoke its introduced links at their providers.
    paths: dict[str, str] = field(default_factory=dict)
    revokers: dict[str, Handler] = field(default_factory=dict)


class Broker:
    """Hands capabilities between components along ``graph``; one instance per daemon.

    ``on_stale(name)`` is called when a consumer did not take a provider's fresh
    capability within ``REBROKER_TIMEOUT_S`` (it then holds a stale one and should be
    restarted).
    """

    def __init__(self, graph: CapabilityGraph,
                 on_stale: Callable[[str], None] | None = None) -> None:
        self._graph = graph
        self._slots = {(name, cap): _Slot() for name, caps in graph.provides.items()
                       for cap in caps}
        self._consumers: dict[str, _Consumer] = {}
        self._on_stale = on_stale
        self._rebrokering: set[asyncio.Task[None]] = set()
        self._channels: dict[str, IntroSender] = {}
        self._revoking: set[asyncio.Task[None]] = set()
        # The Init each component is attached with: a late ``detach`` of a process that
        # a standby replaced must not take the new one's links with it.
        self._attached: dict[str, Init] = {}
        self._standbys: dict[str, _Standby] = {}

    async def attach(self, name: str, init: Init, intro: socket.socket | None = None) -> None:
        """Wire a freshly bootstrapped component in.

        First it receives what it consumes, each capability from its own provider
        (waiting until that provider has published it); then it publishes what it
        provides, which is re-brokered in the background to that provider's attached
        consumers. Returns once this component has all it consumes and has published.
        Raises IpcError (or the RemoteError of a failed hand-over call) if a link fails
        meanwhile; cancellable while waiting. ``name`` must be a component of the graph.
        ``intro``: the component's introduction channel (the broker owns it from now on;
        closed by ``detach``); with one on both sides, a capability is introduced
        directly instead of forwarded.
        """
        self._channels.pop(name, None)
        if intro is not None:
            self._channels[name] = IntroSender(intro)
        self._attached[name] = init
        replaced = self._consumers.pop(name, None)
        if replaced is not None:  # attached again without a detach: its old links go
            self.revoke(replaced)
        needs = self._graph.needs(name)
        if needs:
            role = self._graph.roles[name]
            assert role is not None  # the config gives a component without a role no needs
            # Registered first: a provider restart during the hand-over reaches it too.
            consumer = _Consumer(name, role, init, {b.capability for b in needs})
            self._consumers[name] = consumer
            for binding in needs:
                await self._receive(consumer, binding)
        for cap in self._graph.provides.get(name, ()):
            value = init  # each consumer's capability is minted at its hand-over
            slot = self._slots[(name, cap)]
            slot.value = value
            slot.ready.set()
            log.info("broker.capability_published", component=name, capability=cap)
            # In the background: a stalled consumer must not hold its provider's start.
            for binding in self._graph.consumers(name, cap):
                waiting = self._consumers.get(binding.consumer)
                if waiting is not None and cap not in waiting.receiving:
                    task = asyncio.create_task(self._rebroker(waiting, binding, value))
                    self._rebrokering.add(task)
                    task.add_done_callback(self._rebrokering.discard)

    def update_graph(self, graph: CapabilityGraph) -> None:
        """Take a reloaded config's graph: new providers get empty slots, the slots and
        registrations of components no longer in it go. Components whose bindings
        changed must have been stopped (detached) first: a running consumer keeps what
        it was handed. Never raises."""
        self._graph = graph
        wanted = {(name, cap) for name, caps in graph.provides.items() for cap in caps}
        for key in wanted:
            self._slots.setdefault(key, _Slot())
        for key in set(self._slots) - wanted:
            del self._slots[key]
        for name in set(self._consumers) - set(graph.roles):
            del self._consumers[name]
        for name in set(self._standbys) - set(graph.roles):
            self.discard(name)

    def detach(self, name: str, init: Init | None = None) -> None:
        """Forget a component that stopped; a provider takes its capabilities with it
        (its consumers keep theirs until it publishes fresh ones). With ``init``: only
        if the component is still attached with that Init (not replaced by a promoted
        standby meanwhile). Never raises."""
        if init is not None and self._attached.get(name) is not init:
            return
        self._attached.pop(name, None)
        for cap in self._graph.provides.get(name, ()):
            slot = self._slots[(name, cap)]
            slot.value = None
            slot.ready.clear()
        consumer = self._consumers.pop(name, None)
        if consumer is not None:
            self.revoke(consumer)
        self._channels.pop(name, None)  # the launcher closes the socket with the run

    def revoke(self, consumer: _Consumer) -> None:
        """Close ``consumer``'s introduced links at their providers (in the background:
        a provider that does not answer must not hold the caller). Never raises."""
        for handler in consumer.revokers.values():
            self._in_background(revoke(handler, consumer.name), self._revoking)
        consumer.revokers.clear()

    async def health(self, name: str) -> dict[str, ConsumerHealth]:
        """How ``name`` keeps up with each capability's notifications, by capability,
        as its providers report it (a provider that reports nothing is left out).
        Raises IpcError when a provider does not answer (callers add a deadline)."""
        found: dict[str, ConsumerHealth] = {}
        for binding in self._graph.needs(name):
            provider = self._slots[(binding.provider, binding.capability)].value
            if provider is None or name not in self._consumers:
                continue
            try:
                reports = await provider.consumer_health()
            except NotProvidedError:
                continue
            for report in reports:
                if report.consumer == name:
                    found[binding.capability] = report
        return found

    def links(self, name: str) -> dict[str, str]:
        """How each capability ``name`` consumes reaches it now: INTRODUCED (a direct
        link to its provider) or FORWARDED (through the supervisor). Empty while it has
        none. Never raises."""
        consumer = self._consumers.get(name)
        return dict(consumer.paths) if consumer is not None else {}

    def _in_background(self, work: Coroutine[Any, Any, None],
                       tasks: set[asyncio.Task[None]]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _receive(self, consumer: _Consumer, binding: Binding) -> None:
        slot = self._slots[(binding.provider, binding.capability)]
        while True:
            await slot.ready.wait()
            current = slot.value
            assert current is not None  # ready is set only with a value
            await self._hand(consumer, binding, current)
            if slot.value is current or slot.value is None:
                break  # else the provider restarted meanwhile: hand the new one
        consumer.receiving.discard(binding.capability)
        log.info("broker.capability_given", component=consumer.name,
                 capability=binding.capability, provider=binding.provider)

    async def _obtain(self, name: str, init: Init, binding: Binding,
                      provider: Init, here: IntroSender | None) -> _Prepared:
        """Mint ``binding``'s capability for consumer ``name`` (process ``init``):
        introduced when both sides have a channel, else forwarded."""
        capability = CAPABILITIES[binding.capability]
        grant = self._graph.grant(name)
        there = self._channels.get(binding.provider)
        direct = None
        if there is not None and here is not None:
            direct = await introduce(capability, grant, provider, there, init, here)
        if direct is not None:
            log.info("broker.introduced", component=name, capability=binding.capability,
                     provider=binding.provider, latency_ms=direct.latency_ms)
            return _Prepared(provider, direct.capability, INTRODUCED, direct.revoke)
        return _Prepared(provider, await capability.obtain(provider, grant), FORWARDED, None)

    async def _hand(self, consumer: _Consumer, binding: Binding, provider: Init,
                    prepared: _Prepared | None = None) -> None:
        capability = CAPABILITIES[binding.capability]
        got = prepared or await self._obtain(consumer.name, consumer.init, binding, provider,
                                             self._channels.get(consumer.name))
        try:
            handed = await capability.hand[consumer.role](consumer.init, got.minted)
        except BaseException:
            if got.revoke is not None:
                self._in_background(revoke(got.revoke, consumer.name), self._revoking)
            raise
        old = consumer.revokers.pop(binding.capability, None)
        if old is not None:  # the link it replaces (a provider restart closed it already)
            self._in_background(revoke(old, consumer.name), self._revoking)
        if got.revoke is not None:
            consumer.revokers[binding.capability] = got.revoke
        consumer.paths[binding.capability] = got.path
        consumer.minted[binding.capability] = got.minted
        consumer.received[binding.capability] = handed

    async def prepare(self, name: str, init: Init, intro: socket.socket | None = None
                      ) -> None:
        """Introduce the standby process ``init`` of consumer ``name`` to its providers
        in advance: each capability is minted (under the component's own grant) and
        connected, not handed over. Waits for providers that are down. Raises IpcError
        (or a provider's refusal) like ``attach``; cancellable. ``intro`` is owned by
        the broker from now on (closed with the run)."""
        standby = _Standby(init, IntroSender(intro) if intro is not None else None)
        self.discard(name)
        self._standbys[name] = standby
        for binding in self._graph.needs(name):
            slot = self._slots[(binding.provider, binding.capability)]
            await slot.ready.wait()
            provider = slot.value
            assert provider is not None  # ready is set only with a value
            standby.prepared[binding.capability] = await self._obtain(
                name, init, binding, provider, standby.channel)
        log.info("broker.standby_prepared", component=name,
                 capabilities=sorted(standby.prepared))

    async def promote(self, name: str, init: Init) -> None:
        """Make the prepared standby ``init`` the attached process of ``name``: hand it
        what ``prepare`` obtained (obtained again from a provider that restarted since),
        then revoke the replaced process's links. Call only once the replaced process
        is gone: its RPC names pass to this one. Raises like ``attach``."""
        standby = self._standbys.pop(name, None)
        if standby is None or standby.init is not init:
            raise IpcError(f"{name}: no prepared standby to promote")
        self._channels.pop(name, None)
        if standby.channel is not None:
            self._channels[name] = standby.channel
        self._attached[name] = init
        replaced = self._consumers.pop(name, None)
        if replaced is not None:
            self.revoke(replaced)
        needs = self._graph.needs(name)
        if not needs:
            return
        role = self._graph.roles[name]
        assert role is not None  # the config gives a component without a role no needs
        consumer = _Consumer(name, role, init, {b.capability for b in needs})
        self._consumers[name] = consumer
        for binding in needs:
            got = standby.prepared.pop(binding.capability, None)
            slot = self._slots[(binding.provider, binding.capability)]
            if got is not None and slot.value is got.provider:
                await self._hand(consumer, binding, got.provider, got)
                consumer.receiving.discard(binding.capability)
                log.info("broker.capability_given", component=name,
                         capability=binding.capability, provider=binding.provider,
                         promoted=True)
            else:  # its provider restarted since prepare: that capability is dead
                if got is not None and got.revoke is not None:
                    self._in_background(revoke(got.revoke, name), self._revoking)
                await self._receive(consumer, binding)

    def discard(self, name: str, init: Init | None = None) -> None:
        """Forget ``name``'s prepared standby (with ``init``: only that process's),
        revoking what was introduced for it. Never raises."""
        standby = self._standbys.get(name)
        if standby is None or (init is not None and standby.init is not init):
            return
        del self._standbys[name]
        for got in standby.prepared.values():
            if got.revoke is not None:
                self._in_background(revoke(got.revoke, name), self._revoking)

    async def progress(self, name: str) -> tuple[int | None, int] | None:
        """How far ``name`` has followed what it consumes: (height it processed or None,
        its provider's tip), for the first capability whose table row says how; None
        when it has no such capability or it was not handed over yet. Raises IpcError
        when either side does not answer (callers add a deadline)."""
        consumer = self._consumers.get(name)
        if consumer is None:
            return None
        for binding in self._graph.needs(name):
            read = CAPABILITIES[binding.capability].progress.get(consumer.role)
            handed = consumer.received.get(binding.capability)
            provided = consumer.minted.get(binding.capability)
            if read is not None and handed is not None and provided is not None:
                return await read(handed, provided)
        return None

    async def _rebroker(self, consumer: _Consumer, binding: Binding, value: Init) -> None:
        try:
            await asyncio.wait_for(self._hand(consumer, binding, value),
                                   timeout=REBROKER_TIMEOUT_S)
        except IpcError as exc:
            # The consumer's own runner notices its dead link and restarts it; the
            # fresh instance gets the capability through attach().
            log.warning("broker.rebroker_failed", component=consumer.name,
                        capability=binding.capability, provider=binding.provider,
                        error=str(exc))
            return
        except TimeoutError:
            log.error("broker.rebroker_failed", component=consumer.name,
                      capability=binding.capability, provider=binding.provider,
                      error=f"no answer within {REBROKER_TIMEOUT_S:g} s")
            if self._on_stale is not None and self._consumers.get(consumer.name) is consumer:
                self._on_stale(consumer.name)
            return
        log.info("broker.capability_given", component=consumer.name,
                 capability=binding.capability, provider=binding.provider, rebrokered=True)
