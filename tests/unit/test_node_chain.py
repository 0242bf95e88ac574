"""The node's regtest chain: genesis, mining rules, notifications and RPC routing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from bitcoin.core import CBlock, CheckProofOfWork, b2lx
from bitcoin.core.script import CScript
from embit import ec, script
from embit.networks import NETWORKS
from structlog.testing import capture_logs

from bitcoin_supervisor.interfaces import (
    Block,
    ChainNotifications,
    PeerGoneError,
    RemoteError,
    RpcHandler,
    RpcRequest,
    RpcResponse,
)
from bitcoin_supervisor.roles.node import GENESIS_HASH, NodeChain
from bitcoin_supervisor.roles.node._blockstore import BlockStore
from bitcoin_supervisor.roles.node._consensus import address_to_script

KEY = ec.PrivateKey(bytes.fromhex("11" * 32))
ADDRESS = script.p2wpkh(KEY.get_public_key()).address(NETWORKS["regtest"])
COIN = 100_000_000


def _script() -> CScript:
    return address_to_script(ADDRESS)


class Recorder(ChainNotifications):
    """Records what the node delivers; optionally fails like a dead or buggy peer."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.heights: list[int] = []
        self.fail_with = fail_with

    async def block_connected(self, block: Block) -> None:
        await asyncio.sleep(0)  # a real receiver is remote: let the loop run in between
        self.heights.append(block.height)
        if self.fail_with is not None:
            raise self.fail_with

    async def block_disconnected(self, block: Block) -> None:
        raise AssertionError("no reorgs on this node")


class Echoer(RpcHandler):
    def __init__(self, tag: str, gone: bool = False) -> None:
        self.tag = tag
        self.gone = gone
        self.seen: list[RpcRequest] = []

    async def execute(self, request: RpcRequest) -> RpcResponse:
        if self.gone:
            raise PeerGoneError("wallet process died")
        self.seen.append(request)
        return RpcResponse.ok({"tag": self.tag, "wallet": request.wallet})


def test_fresh_chain_starts_at_the_regtest_genesis(tmp_path: Path) -> None:
    async def scenario() -> None:
        chain = NodeChain.open(tmp_path / "blocks")
        tip = await chain.get_tip()
        assert (tip.height, tip.hash) == (0, GENESIS_HASH)
        genesis = await chain.get_block(0)
        assert genesis is not None and b2lx(CBlock.deserialize(genesis.raw).GetHash()) == \
            GENESIS_HASH
        assert await chain.get_block(1) is None and await chain.get_block_hash(-1) is None
        chain.close()
    asyncio.run(scenario())


def test_mining_101_blocks_follows_regtest_rules_quickly(tmp_path: Path) -> None:
    async def scenario() -> float:
        chain = NodeChain.open(tmp_path / "blocks")
        started = time.perf_counter()
        hashes = await chain.generate_to_address(101, _script())
        elapsed = time.perf_counter() - started
        assert len(hashes) == 101 and (await chain.get_tip()).height == 101
        previous = GENESIS_HASH
        for height, block_hash in enumerate(hashes, start=1):
            stored = await chain.get_block(height)
            assert stored is not None and stored.hash == block_hash
            block = CBlock.deserialize(stored.raw)
            assert b2lx(block.hashPrevBlock) == previous and b2lx(block.GetHash()) == block_hash
            CheckProofOfWork(block.GetHash(), block.nBits)
            assert block.nBits == 0x207FFFFF
            assert block.hashMerkleRoot == block.calc_merkle_root()
            coinbase = block.vtx[0]
            assert coinbase.is_coinbase() and len(block.vtx) == 1
            assert bytes(coinbase.vin[0].scriptSig).startswith(bytes(CScript([height])))
            assert coinbase.vout[0].nValue == 50 * COIN
            assert coinbase.vout[0].scriptPubKey == _script()
            previous = block_hash
        chain.close()
        return elapsed
    elapsed = asyncio.run(scenario())
    print(f"mined 101 blocks in {elapsed * 1000:.1f} ms")
    assert elapsed < 1.0


def test_subsidy_halves_at_height_150_and_times_follow_median_time_past(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        frozen = time.time() - 3600  # a clock that stands still: blocks must still move on
        store, entries = BlockStore.open(tmp_path / "blocks")
        chain = NodeChain(store, entries, clock=lambda: frozen)
        await chain.generate_to_address(151, _script())
        values = {}
        for height in (149, 150, 151):
            block = await chain.get_block(height)
            assert block is not None
            values[height] = CBlock.deserialize(block.raw).vtx[0].vout[0].nValue
        assert values == {149: 50 * COIN, 150: 25 * COIN, 151: 25 * COIN}
        for height in range(2, 152):
            assert chain.entry(height).time > chain.median_time(height - 1)
        assert chain.entry(1).time == int(frozen)
        chain.close()
    asyncio.run(scenario())


@pytest.mark.parametrize("address", [
    "bcrt1q0xcqpzrky6eff2g52qdye53xkk9jxkvrl4xfg5",  # P2WPKH
    "bcrt1p33wm0auhr9kkahzd6l0kqj85af4cswn276hsxg6zpz85xe2r0y8s7hfsm7",  # P2TR
    "mrcNu71ztWjAQA6ww9kHiW3zBWSQidHXTQ",  # P2PKH
    "2MzQwSSnBHWHqSAqtTVQ6v47XtaisrJa1Vc",  # P2SH
])
def test_regtest_addresses_are_accepted(address: str) -> None:
    assert len(address_to_script(address)) > 0


@pytest.mark.parametrize("address", [
    "bc1q0xcqpzrky6eff2g52qdye53xkk9jxkvrcdzq2a",  # mainnet
    "bcrt1q0xcqpzrky6eff2g52qdye53xkk9jxkvrl4xfg6",  # bad checksum
    "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",  # mainnet P2PKH
    "",
    "not an address",
])
def test_other_addresses_are_rejected(address: str) -> None:
    with pytest.raises(ValueError):
        address_to_script(address)


def test_notifications_arrive_in_order_and_failing_receivers_are_handled(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        chain = NodeChain.open(tmp_path / "blocks")
        await chain.generate_to_address(2, _script())  # before registration: not replayed
        good, buggy, dead = Recorder(), Recorder(RemoteError("bug")), \
            Recorder(PeerGoneError("gone"))
        for receiver in (good, buggy, dead):
            await chain.handle_notifications(receiver)
        with capture_logs() as logs:
            await chain.generate_to_address(70, _script())  # spans two mining batches
        assert [e["event"] for e in logs].count("notifications.gone") == 1
        assert [e["event"] for e in logs].count("notification.failed") == 70
        assert good.heights == list(range(3, 73))
        assert buggy.heights == list(range(3, 73))  # a raising receiver is kept
        assert dead.heights == [3]  # a gone receiver is dropped after its first failure
        late = Recorder()
        handler = await chain.handle_notifications(late)
        await chain.generate_to_address(1, _script())
        await handler.disconnect()
        await handler.disconnect()  # idempotent
        await chain.generate_to_address(1, _script())
        assert late.heights == [73] and good.heights[-2:] == [73, 74]
        chain.close()
    asyncio.run(scenario())


def test_rpc_routes_replace_disconnect_and_drop_gone_handlers(tmp_path: Path) -> None:
    async def scenario() -> None:
        chain = NodeChain.open(tmp_path / "blocks")
        first, second = Echoer("first"), Echoer("second")
        handle_first = await chain.handle_rpc(["getbalance", "getnewaddress"], first)
        await chain.handle_rpc(["getbalance"], second)  # later registration wins
        reply = await chain.forward(RpcRequest("getbalance", "[]", "alice"))
        assert reply is not None and reply.result_json == '{"tag": "second", "wallet": "alice"}'
        await handle_first.disconnect()
        assert chain.routed_methods() == ["getbalance"]  # only first's own routes went
        second.gone = True
        assert await chain.forward(RpcRequest("getbalance")) is None
        assert chain.routed_methods() == []
        chain.close()
    asyncio.run(scenario())


def test_mining_leaves_the_event_loop_responsive(tmp_path: Path) -> None:
    async def scenario() -> float:
        chain = NodeChain.open(tmp_path / "blocks")
        worst = 0.0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal worst
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                worst, last = max(worst, now - last), now

        task = asyncio.create_task(ticker())
        await chain.generate_to_address(1000, _script())
        done.set()
        await task
        chain.close()
        return worst
    worst = asyncio.run(scenario())
    print(f"longest event-loop stall while mining 1000 blocks: {worst * 1000:.1f} ms")
    assert worst < 0.2
