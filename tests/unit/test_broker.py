"""The broker follows the capability graph: each consumer gets its own provider's Chain,
and a provider restart re-brokers to that provider's consumers only.

The components are plain Python fakes of ``Init`` (the broker logic is what is under
test; the real links are covered by the integration tests).
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from bitcoin_supervisor.interfaces import (
    Chain,
    ChainGrant,
    Index,
    Init,
    PeerGoneError,
    WalletLoader,
)
from bitcoin_supervisor.supervisor import _broker
from bitcoin_supervisor.supervisor._broker import Broker
from bitcoin_supervisor.supervisor._capabilities import CapabilityGraph
from bitcoin_supervisor.supervisor._config import load_config

WAIT_S = 5.0  # a deadline for events that must come, never a sleep


class FakeChain:
    """Stands for one node run's Chain; only its identity matters here."""

    def __init__(self, node: str, run: int) -> None:
        self.label = f"{node}#{run}"


class FakeNode(Init):
    """Mints the same FakeChain for every consumer and records who it was minted for."""

    def __init__(self, name: str, run: int = 1) -> None:
        self.chain = FakeChain(name, run)
        self.grants: list[ChainGrant] = []

    async def make_chain(self, grant: ChainGrant) -> Chain:
        self.grants.append(grant)
        return cast(Chain, self.chain)


class FakeConsumer(Init):
    """A wallet or index: records every Chain handed to it, in order."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.changed = asyncio.Event()
        self.hold: asyncio.Event | None = None  # set: the next hand-over waits for it
        self.holding = asyncio.Event()  # a hand-over is waiting for ``hold``
        self.fail: BaseException | None = None

    async def _take(self, chain: Chain) -> None:
        if self.fail is not None:
            raise self.fail
        if self.hold is not None:
            hold, self.hold = self.hold, None
            self.holding.set()
            await hold.wait()
        self.received.append(cast(FakeChain, chain).label)
        self.changed.set()

    async def make_wallet_loader(self, chain: Chain) -> WalletLoader:
        await self._take(chain)
        return cast(WalletLoader, None)

    async def make_index(self, chain: Chain) -> Index:
        await self._take(chain)
        return cast(Index, None)

    async def wait_received(self, count: int) -> None:
        async def until() -> None:
            while len(self.received) < count:
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(until(), WAIT_S)


TWO_NODES = """
    [components.node-a]
    role = "node"
    rpcport = 18501
    [components.node-b]
    role = "node"
    rpcport = 18502
    [components.wallet-a]
    role = "wallet"
    consumes = ["chain@node-a"]
    [components.wallet-b]
    role = "wallet"
    consumes = ["chain@node-b"]
    [components.index-b]
    role = "index"
    consumes = ["chain@node-b"]
    """


def graph_of(tmp_path: Path, text: str) -> CapabilityGraph:
    path = tmp_path / "multiprocess.toml"
    path.write_text(textwrap.dedent(text))
    return load_config(path).graph


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 4 * WAIT_S))


async def _settle(broker: Broker) -> None:
    """Wait for the broker's background re-brokering to end (it is internal state)."""
    pending = set(broker._rebrokering)  # noqa: SLF001 - test of the broker's own tasks
    if pending:
        await asyncio.wait(pending, timeout=WAIT_S)


def test_each_wallet_receives_its_own_providers_chain(tmp_path: Path) -> None:
    async def scenario() -> None:
        broker = Broker(graph_of(tmp_path, TWO_NODES))
        consumers = {n: FakeConsumer() for n in ("wallet-a", "wallet-b", "index-b")}
        node_a, node_b = FakeNode("node-a"), FakeNode("node-b")
        await broker.attach("node-a", node_a)
        await broker.attach("node-b", node_b)
        for name, fake in consumers.items():
            await broker.attach(name, fake)
        assert {n: c.received for n, c in consumers.items()} == {
            "wallet-a": ["node-a#1"], "wallet-b": ["node-b#1"], "index-b": ["node-b#1"]}
        # Each capability was minted for its consumer, with that consumer's RPC names.
        assert [g.consumer for g in node_a.grants] == ["wallet-a"]
        assert sorted(g.consumer for g in node_b.grants) == ["index-b", "wallet-b"]
        index_grant = next(g for g in node_b.grants if g.consumer == "index-b")
        assert index_grant.rpc_methods == ("getindexinfo", "getrawtransaction")
    run(scenario())


def test_provider_restart_rebrokers_only_to_its_own_consumers(tmp_path: Path) -> None:
    async def scenario() -> None:
        broker = Broker(graph_of(tmp_path, TWO_NODES))
        consumers = {n: FakeConsumer() for n in ("wallet-a", "wallet-b", "index-b")}
        await broker.attach("node-a", FakeNode("node-a"))
        await broker.attach("node-b", FakeNode("node-b"))
        for name, fake in consumers.items():
            await broker.attach(name, fake)
        broker.detach("node-b")
        with capture_logs() as logs:
            await broker.attach("node-b", FakeNode("node-b", run=2))
            await consumers["wallet-b"].wait_received(2)
            await consumers["index-b"].wait_received(2)
            await _settle(broker)
        assert {n: c.received for n, c in consumers.items()} == {
            "wallet-a": ["node-a#1"],
            "wallet-b": ["node-b#1", "node-b#2"],
            "index-b": ["node-b#1", "node-b#2"]}
        given = sorted(e["component"] for e in logs
                       if e["event"] == "broker.capability_given" and e.get("rebrokered"))
        assert given == ["index-b", "wallet-b"]
    run(scenario())


def test_consumer_waits_for_its_provider_and_gets_the_chain_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        broker = Broker(graph_of(tmp_path, TWO_NODES))
        wallet = FakeConsumer()
        attaching = asyncio.create_task(broker.attach("wallet-a", wallet))
        await broker.attach("node-b", FakeNode("node-b"))  # not its provider
        assert not attaching.done()
        await broker.attach("node-a", FakeNode("node-a"))
        await asyncio.wait_for(attaching, WAIT_S)
        await _settle(broker)
        assert wallet.received == ["node-a#1"]
    run(scenario())


def test_provider_restart_during_the_hand_over_reaches_the_consumer(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        broker = Broker(graph_of(tmp_path, TWO_NODES))
        await broker.attach("node-a", FakeNode("node-a"))
        wallet = FakeConsumer()
        release = wallet.hold = asyncio.Event()
        attaching = asyncio.create_task(broker.attach("wallet-a", wallet))
        await asyncio.wait_for(wallet.holding.wait(), WAIT_S)  # hand-over under way
        broker.detach("node-a")
        await broker.attach("node-a", FakeNode("node-a", run=2))
        release.set()
        await asyncio.wait_for(attaching, WAIT_S)
        await _settle(broker)
        # The old Chain, then the new one, each once: the restart was not lost.
        assert wallet.received == ["node-a#1", "node-a#2"]
    run(scenario())


def test_consumer_that_does_not_take_the_fresh_chain_is_reported_stale(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_broker, "REBROKER_TIMEOUT_S", 0.05)

    async def scenario() -> None:
        stale: list[str] = []
        broker = Broker(graph_of(tmp_path, TWO_NODES), on_stale=stale.append)
        wallets = {n: FakeConsumer() for n in ("wallet-a", "wallet-b")}
        await broker.attach("node-a", FakeNode("node-a"))
        await broker.attach("node-b", FakeNode("node-b"))
        for name, fake in wallets.items():
            await broker.attach(name, fake)
        wallets["wallet-a"].hold = asyncio.Event()  # frozen: never answers
        broker.detach("node-a")
        await broker.attach("node-a", FakeNode("node-a", run=2))  # not held by it
        await _settle(broker)
        assert stale == ["wallet-a"]
        assert wallets["wallet-b"].received == ["node-b#1"]
    run(scenario())


def test_consumer_whose_link_broke_is_left_to_its_own_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        stale: list[str] = []
        broker = Broker(graph_of(tmp_path, TWO_NODES), on_stale=stale.append)
        wallet = FakeConsumer()
        await broker.attach("node-a", FakeNode("node-a"))
        await broker.attach("wallet-a", wallet)
        wallet.fail = PeerGoneError("wallet-a: link closed")
        broker.detach("node-a")
        with capture_logs() as logs:
            await broker.attach("node-a", FakeNode("node-a", run=2))
            await _settle(broker)
        assert stale == []
        assert [e["event"] for e in logs if e["event"].startswith("broker.rebroker")] == [
            "broker.rebroker_failed"]
    run(scenario())


def test_detached_consumer_gets_nothing_and_a_foreign_program_is_ignored(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        broker = Broker(graph_of(tmp_path, """
            [components.node]
            [components.wallet]
            [components.calc]
            argv = ["mpcalculator", "{fd}"]
            sandbox = "none"
            """))
        wallet = FakeConsumer()
        await broker.attach("node", FakeNode("node"))
        await broker.attach("wallet", wallet)
        await broker.attach("calc", Init())  # provides and consumes nothing
        broker.detach("wallet")
        broker.detach("node")
        await broker.attach("node", FakeNode("node", run=2))
        await _settle(broker)
        assert wallet.received == ["node#1"]
    run(scenario())
