"""Each consumer's Chain is minted for it: RPC names are owned, limits hold, and a
receiver that hangs never holds up mining (the node's side, in process; the attacks
from real sandboxed consumers are in tests/integration/test_hostile_consumer.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from embit import ec, script
from embit.networks import NETWORKS
from structlog.testing import capture_logs

from bitcoin_supervisor.interfaces import (
    Block,
    ChainGrant,
    ChainLimits,
    ChainNotifications,
    InvalidArgumentError,
    LimitExceededError,
    RpcHandler,
    RpcNameNotAllowedError,
    RpcNameOwnedError,
    RpcRequest,
    RpcResponse,
)
from bitcoin_supervisor.roles.index._rpc import IndexRpc
from bitcoin_supervisor.roles.node import NodeChain
from bitcoin_supervisor.roles.node._consensus import address_to_script
from bitcoin_supervisor.roles.wallet._rpc import WalletRpc
from bitcoin_supervisor.supervisor._capabilities import (
    ROLE_RPC_METHODS,
    Binding,
    CapabilityGraph,
)

ADDRESS = script.p2wpkh(ec.PrivateKey(bytes.fromhex("11" * 32)).get_public_key()).address(
    NETWORKS["regtest"])
WALLET = ChainGrant("wallet", ROLE_RPC_METHODS["wallet"])
INDEX = ChainGrant("index", ROLE_RPC_METHODS["index"])


class Tagged(RpcHandler):
    """Answers with its tag; ``hold`` makes every call wait until it is set."""

    def __init__(self, tag: str, hold: asyncio.Event | None = None, size: int = 0) -> None:
        self.tag, self.hold, self.size = tag, hold, size

    async def execute(self, request: RpcRequest) -> RpcResponse:
        if self.hold is not None:
            await self.hold.wait()
        return RpcResponse(f'"{self.tag}"' + " " * self.size)


class Stuck(ChainNotifications):
    """Never returns from block_connected (a hostile or frozen receiver)."""

    def __init__(self) -> None:
        self.calls = 0

    async def block_connected(self, block: Block) -> None:
        self.calls += 1
        await asyncio.Event().wait()

    async def block_disconnected(self, block: Block) -> None:
        raise AssertionError("no reorgs")


class Slow(ChainNotifications):
    """Takes ``delay`` per block; records what it was told."""

    def __init__(self, delay: float) -> None:
        self.delay, self.heights = delay, list[int]()

    async def block_connected(self, block: Block) -> None:
        await asyncio.sleep(self.delay)
        self.heights.append(block.height)

    async def block_disconnected(self, block: Block) -> None:
        raise AssertionError("no reorgs")


def _run(tmp_path: Path, scenario: object) -> None:
    async def main() -> None:
        chain = NodeChain.open(tmp_path / "blocks")
        chain.reserve(["getblockcount", "generatetoaddress"])
        try:
            await scenario(chain)  # type: ignore[operator]
        finally:
            await chain.aclose()
    asyncio.run(main())


def test_role_defaults_are_the_names_the_roles_register() -> None:
    assert sorted(WalletRpc(None).handler().names) == sorted(  # type: ignore[arg-type]
        ROLE_RPC_METHODS["wallet"])
    assert sorted(IndexRpc(None).handler().names) == sorted(  # type: ignore[arg-type]
        ROLE_RPC_METHODS["index"])


def test_an_index_cannot_take_the_wallets_names_or_the_nodes(tmp_path: Path) -> None:
    async def scenario(node: NodeChain) -> None:
        wallet, index = node.mint(WALLET), node.mint(INDEX)
        await wallet.handle_rpc(["getnewaddress"], Tagged("wallet"))
        with capture_logs() as logs:
            with pytest.raises(RpcNameOwnedError, match="owned by wallet"):
                await index.handle_rpc(["getindexinfo", "getnewaddress"], Tagged("evil"))
            with pytest.raises(RpcNameOwnedError, match="owned by node"):
                await index.handle_rpc(["getblockcount"], Tagged("evil"))
            with pytest.raises(RpcNameNotAllowedError):
                await index.handle_rpc(["sendtoaddress"], Tagged("evil"))
        refused = [(e["consumer"], e["method"], e["reason"]) for e in logs
                   if e["event"] == "rpc_name.refused"]
        assert refused == [("index", "getnewaddress", "owned"),
                           ("index", "getblockcount", "owned"),
                           ("index", "sendtoaddress", "not granted")]
        reply = await node.forward(RpcRequest("getnewaddress"))
        assert reply is not None and reply.result_json == '"wallet"'
        assert "getindexinfo" not in node.routed_methods()  # all or nothing
        # Nor can a grant to another consumer (a config mistake) take an owned name.
        with pytest.raises(RpcNameOwnedError):
            node.mint(ChainGrant("index", ("getnewaddress",)))
    _run(tmp_path, scenario)


def test_owned_or_not_allowed_does_not_depend_on_minting_order(tmp_path: Path) -> None:
    """The index is minted first, the wallet never: with the supervisor's grants (which
    say what the other consumers own) the wallet's names are still "owned by wallet"."""
    graph = CapabilityGraph(roles={"node": "node", "wallet": "wallet", "index": "index"},
                            provides={"node": ("chain",)},
                            bindings=(Binding("wallet", "chain", "node"),
                                      Binding("index", "chain", "node")))

    async def scenario(node: NodeChain) -> None:
        grant = graph.grant("index")
        assert ("getnewaddress", "wallet") in grant.owned_elsewhere
        index = node.mint(grant)
        with pytest.raises(RpcNameOwnedError, match="owned by wallet"):
            await index.handle_rpc(["getnewaddress"], Tagged("evil"))
        with pytest.raises(RpcNameNotAllowedError):
            await index.handle_rpc(["sendtoaddress"], Tagged("evil"))
        # The wallet, minted later, registers its names as usual.
        wallet = node.mint(graph.grant("wallet"))
        await wallet.handle_rpc(["getnewaddress"], Tagged("wallet"))
        reply = await node.forward(RpcRequest("getnewaddress"))
        assert reply is not None and reply.result_json == '"wallet"'
    _run(tmp_path, scenario)


def test_a_restarted_consumer_gets_its_names_back_and_no_one_else(tmp_path: Path) -> None:
    async def scenario(node: NodeChain) -> None:
        first = node.mint(WALLET)
        await first.handle_rpc(["getbalance"], Tagged("wallet#1"))
        index = node.mint(INDEX)
        route = node.routes.get("getbalance")
        assert route is not None
        node.drop_routes(route.registration, "peer gone")  # the wallet died
        assert await node.forward(RpcRequest("getbalance")) is None
        with pytest.raises(RpcNameOwnedError):
            await index.handle_rpc(["getbalance"], Tagged("evil"))  # meanwhile: still owned
        again = node.mint(WALLET)
        await again.handle_rpc(["getbalance"], Tagged("wallet#2"))
        reply = await node.forward(RpcRequest("getbalance"))
        assert reply is not None and reply.result_json == '"wallet#2"'
    _run(tmp_path, scenario)


def test_a_standby_of_the_same_consumer_takes_the_names_over_and_no_one_else(
        tmp_path: Path) -> None:
    """The rule a warm standby relies on: names belong to the consumer, not to one of its
    processes. A second Chain minted for the same consumer while the first process's
    registration is still there (the node has not seen it die yet) takes every name over
    when it registers: one route per name, the newest; the old registration's late drop
    leaves the new routes alone; another consumer can take none of them."""
    async def scenario(node: NodeChain) -> None:
        active = node.mint(WALLET)
        old = await active.handle_rpc(["getbalance", "getnewaddress"], Tagged("wallet#1"))
        standby = node.mint(WALLET)  # prepared in advance: registers nothing yet
        reply = await node.forward(RpcRequest("getbalance"))
        assert reply is not None and reply.result_json == '"wallet#1"'
        await standby.handle_rpc(["getbalance", "getnewaddress"], Tagged("wallet#2"))
        for name in ("getbalance", "getnewaddress"):
            reply = await node.forward(RpcRequest(name))
            assert reply is not None and reply.result_json == '"wallet#2"'
        await old.disconnect()  # the dead process's registration goes late
        reply = await node.forward(RpcRequest("getbalance"))
        assert reply is not None and reply.result_json == '"wallet#2"'
        index = node.mint(INDEX)
        with pytest.raises(RpcNameOwnedError, match="owned by wallet"):
            await index.handle_rpc(["getbalance"], Tagged("evil"))
        with pytest.raises(RpcNameOwnedError):
            node.mint(ChainGrant("index", ("getbalance",)))
    _run(tmp_path, scenario)


def test_names_and_registrations_are_bounded(tmp_path: Path) -> None:
    async def scenario(node: NodeChain) -> None:
        limits = ChainLimits(max_rpc_names=2, max_name_length=12, max_registrations=3)
        wallet = node.mint(ChainGrant("wallet", ROLE_RPC_METHODS["wallet"], limits))
        with pytest.raises(LimitExceededError):
            await wallet.handle_rpc(["getbalance", "getbalances", "listunspent"], Tagged("w"))
        with pytest.raises(InvalidArgumentError):
            await wallet.handle_rpc(["x" * 13], Tagged("w"))
        for bad in ("", "GetBalance", "get balance", "ü"):
            with pytest.raises(InvalidArgumentError):
                await wallet.handle_rpc([bad], Tagged("w"))
        handlers = [await wallet.handle_rpc(["getbalance"], Tagged(f"w{i}")) for i in range(3)]
        with pytest.raises(LimitExceededError, match="live registrations"):
            await wallet.handle_rpc(["getbalance"], Tagged("flood"))
        await handlers[0].disconnect()
        await wallet.handle_rpc(["getbalance"], Tagged("w3"))  # a freed slot is reusable
        # A flood of registrations leaves the node's tables where they were.
        for _ in range(1000):
            with pytest.raises(LimitExceededError):
                await wallet.handle_rpc(["getbalance"], Tagged("flood"))
        assert node.routed_methods() == ["getbalance"]
    _run(tmp_path, scenario)


def test_bad_heights_are_typed_errors_and_heights_above_the_tip_none(tmp_path: Path) -> None:
    async def scenario(node: NodeChain) -> None:
        index = node.mint(INDEX)
        for height in (-1, -2**31):
            with pytest.raises(InvalidArgumentError):
                await index.get_block(height)
            with pytest.raises(InvalidArgumentError):
                await index.get_block_hash(height)
        assert await index.get_block(2**31 - 1) is None
        assert await index.get_block_hash(1) is None
        assert (await index.get_block(0)) is not None
    _run(tmp_path, scenario)


def test_calls_in_flight_and_answer_size_are_bounded_per_consumer(tmp_path: Path) -> None:
    async def scenario(node: NodeChain) -> None:
        limits = ChainLimits(max_calls_in_flight=2, max_message_bytes=1000)
        wallet = node.mint(ChainGrant("wallet", ("getbalance", "listunspent"), limits))
        hold = asyncio.Event()
        await wallet.handle_rpc(["getbalance"], Tagged("w", hold))
        await wallet.handle_rpc(["listunspent"], Tagged("w", size=2000))
        pending = [asyncio.create_task(node.forward(RpcRequest("getbalance")))
                   for _ in range(2)]
        await asyncio.sleep(0)  # they reach the handler and wait there
        with pytest.raises(LimitExceededError, match="calls in flight"):
            await node.forward(RpcRequest("getbalance"))
        hold.set()
        assert all(r is not None for r in await asyncio.gather(*pending))
        with pytest.raises(LimitExceededError, match="bytes"):
            await node.forward(RpcRequest("listunspent"))
        # The consumer's own calls into the node have their own budget.
        assert (await wallet.get_tip()).height == 0
    _run(tmp_path, scenario)


def test_a_receiver_that_never_returns_does_not_stop_mining(tmp_path: Path) -> None:
    async def scenario(node: NodeChain) -> None:
        limits = ChainLimits(notify_deadline_ms=200, notify_queue_depth=4)
        stuck = Stuck()
        healthy = Slow(0)
        await node.mint(ChainGrant("index", (), limits)).handle_notifications(stuck)
        # The healthy one answers at once; its own deadline is generous so that a busy
        # machine cannot make it look slow (this test is about the stuck one only).
        await node.mint(ChainGrant("wallet", (), ChainLimits(notify_deadline_ms=30_000))
                        ).handle_notifications(healthy)
        pays = address_to_script(ADDRESS)
        with capture_logs() as logs:
            started = time.perf_counter()
            await node.generate_to_address(3, pays)
            first = time.perf_counter() - started
            started = time.perf_counter()
            await node.generate_to_address(100, pays)
            second = time.perf_counter() - started
        assert first < 2.0 and second < 2.0  # at most one deadline, then not waited for
        # The healthy one keeps up: in order, up to the tip, never lagging. (On a busy
        # machine a 100-block burst may overflow its queue: blocks are then coalesced
        # into the newest, by design — it catches up through getBlock.)
        assert healthy.heights == sorted(set(healthy.heights))
        assert healthy.heights[-1] == 103
        assert stuck.calls == 1  # one outstanding call, never a pile of them
        lagging = [e for e in logs if e["event"] == "notifications.lagging"]
        assert [(e["consumer"], e["reason"]) for e in lagging] == [("index", "deadline missed")]
        assert node.lagging() == ["index"]
        receiver = next(r for r in node._receivers.values()  # noqa: SLF001
                        if r.consumer == "index")
        assert len(receiver._queue) <= 4  # noqa: SLF001 - bounded however long it hangs
    _run(tmp_path, scenario)


def test_a_slow_receiver_is_coalesced_and_catches_up(tmp_path: Path) -> None:
    async def scenario(node: NodeChain) -> None:
        slow = Slow(0.02)
        limits = ChainLimits(notify_deadline_ms=5000, notify_queue_depth=2)
        await node.mint(ChainGrant("wallet", (), limits)).handle_notifications(slow)
        with capture_logs() as logs:
            await node.generate_to_address(100, address_to_script(ADDRESS))
        # Told about fewer blocks than were mined, but about the last one, before return.
        assert slow.heights[-1] == 100 and len(slow.heights) < 100
        assert slow.heights == sorted(slow.heights)
        assert any(e["event"] == "notifications.coalesced" for e in logs)
        assert node.lagging() == []
    _run(tmp_path, scenario)
