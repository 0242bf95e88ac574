"""The txindex finds confirmed transactions like bitcoind's -txindex."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from _chainfixture import FixtureChain, RpcFailure
from bitcoin.core import b2lx
from structlog.testing import capture_logs

from bitcoin_supervisor.interfaces import ComponentSettings, Init
from bitcoin_supervisor.roles.index import IndexProcess
from bitcoin_supervisor.roles.index._index import IndexImpl

PAYEE = bytes.fromhex("0014" + "ab" * 20)
PAYEE_ADDRESS = "bcrt1q4w46h2at4w46h2at4w46h2at4w46h2atzmxqe2"  # python-bitcoinlib's encoding


async def started(datadir: Path) -> tuple[IndexProcess, Init]:
    proc = IndexProcess()
    init = await proc.start(ComponentSettings(name="index", role="index", datadir=str(datadir)))
    return proc, init


def test_coinbase_lookup_hex_and_verbose(tmp_path: Path) -> None:
    async def scenario() -> None:
        proc, init = await started(tmp_path)
        chain = FixtureChain()
        index = await init.make_index(chain)
        await chain.generate(5, PAYEE)
        block = chain.blocks[3]
        coinbase = block.vtx[0]
        txid = b2lx(coinbase.GetTxid())

        assert await chain.rpc("getrawtransaction", [txid]) == coinbase.serialize().hex()
        assert await chain.rpc("getrawtransaction", [txid.upper(), 0]) == (
            coinbase.serialize().hex())
        verbose = await chain.rpc("getrawtransaction", [txid, True])
        assert verbose["txid"] == txid and verbose["hash"] == b2lx(coinbase.GetHash())
        assert verbose["hash"] != txid  # the coinbase carries the witness reserved value
        assert verbose["blockhash"] == b2lx(block.GetHash())
        assert verbose["confirmations"] == 3  # heights 3, 4, 5
        assert verbose["time"] == verbose["blocktime"] == block.nTime
        assert verbose["size"] == len(coinbase.serialize())
        assert verbose["weight"] == coinbase.calc_weight()
        assert verbose["vsize"] == (verbose["weight"] + 3) // 4
        (vin,) = verbose["vin"]
        assert vin["coinbase"].startswith("53")  # BIP34: push of height 3 (OP_3)
        assert vin["txinwitness"] == ["00" * 32] and vin["sequence"] == 0xFFFFFFFF
        pay, commitment = verbose["vout"]
        assert pay["value"] == 50 and pay["n"] == 0
        assert pay["scriptPubKey"]["type"] == "witness_v0_keyhash"
        assert pay["scriptPubKey"]["address"] == PAYEE_ADDRESS
        assert pay["scriptPubKey"]["asm"] == "0 " + "ab" * 20
        assert pay["scriptPubKey"]["desc"].startswith(f"addr({PAYEE_ADDRESS})#")
        assert commitment["scriptPubKey"]["type"] == "nulldata"
        assert commitment["scriptPubKey"]["asm"].startswith("OP_RETURN aa21a9ed")
        assert '"value": 50.00000000' in chain.last_json
        assert verbose["hex"] == coinbase.serialize().hex()

        found = await index.get_transaction(txid)
        assert found is not None and found.block_height == 3
        assert found.raw == coinbase.serialize()
        await proc.stop()

    asyncio.run(scenario())


def test_unknown_and_malformed_txids(tmp_path: Path) -> None:
    async def scenario() -> None:
        proc, init = await started(tmp_path)
        chain = FixtureChain()
        index = await init.make_index(chain)
        assert isinstance(index, IndexImpl)
        # Handed over once attached; until the catch-up is done, bitcoind's answer.
        with pytest.raises(RpcFailure) as caught:
            await chain.rpc("getrawtransaction", ["00" * 32])
        assert caught.value.code == -5
        assert "still in the process of being indexed" in caught.value.message
        assert await chain.rpc("getindexinfo") == {
            "txindex": {"synced": False, "best_block_height": -1}}
        await index.caught_up()
        genesis_coinbase = b2lx(chain.blocks[0].vtx[0].GetTxid())
        for txid, code in ((genesis_coinbase, -5), ("00" * 32, -5), ("xyz", -8),
                           ("ab" * 31, -8)):
            with pytest.raises(RpcFailure) as caught:
                await chain.rpc("getrawtransaction", [txid])
            assert caught.value.code == code
        with pytest.raises(RpcFailure) as caught:
            await chain.rpc("getrawtransaction", ["00" * 32])
        assert caught.value.message == ("No such mempool or blockchain transaction. "
                                         "Use gettransaction for wallet transactions.")
        await proc.stop()

    asyncio.run(scenario())


def test_getindexinfo_and_catch_up_after_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        proc, init = await started(tmp_path)
        chain = FixtureChain()
        await init.make_index(chain)
        await chain.generate(7, PAYEE)
        assert await chain.rpc("getindexinfo") == {
            "txindex": {"synced": True, "best_block_height": 7}}
        assert await chain.rpc("getindexinfo", ["txindex"]) == await chain.rpc("getindexinfo")
        assert await chain.rpc("getindexinfo", ["basic block filter index"]) == {}
        await proc.stop()

        chain.notifications.clear()
        chain.mine(20, PAYEE)
        proc, init = await started(tmp_path)
        index = await init.make_index(FixtureChain(list(chain.blocks)))
        assert isinstance(index, IndexImpl)
        await index.caught_up()
        info = await index.get_info()
        assert info.synced and info.best_block_height == 27
        assert await index.get_transaction(b2lx(chain.blocks[27].vtx[0].GetTxid()))
        await proc.stop()

    asyncio.run(scenario())


def test_peer_gone_during_sync_then_new_chain(tmp_path: Path) -> None:
    async def scenario() -> None:
        proc, init = await started(tmp_path)
        chain = FixtureChain()
        chain.mine(40, PAYEE)
        chain.calls_left = 12
        with capture_logs() as logs:
            index = await init.make_index(chain)
            assert isinstance(index, IndexImpl)
            await index.caught_up()
        assert "chain.lost" in [e["event"] for e in logs]
        info = await index.get_info()
        assert not info.synced and 0 <= info.best_block_height < 40
        assert await chain.rpc("getindexinfo") == {
            "txindex": {"synced": False, "best_block_height": info.best_block_height}}

        fork = FixtureChain(list(chain.blocks)).fork(5, tag=b"B")
        fork.mine(10, PAYEE)
        await init.make_index(fork)
        await index.caught_up()
        info = await index.get_info()
        assert info.synced and info.best_block_height == 15
        old_txid = b2lx(chain.blocks[8].vtx[0].GetTxid())
        new_txid = b2lx(fork.blocks[8].vtx[0].GetTxid())
        assert old_txid != new_txid
        assert await index.get_transaction(new_txid) is not None
        if info.best_block_height >= 8:
            assert await index.get_transaction(old_txid) is None
        await proc.stop()

    asyncio.run(scenario())
