"""getaddressinfo and listreceivedbyaddress: every address the wallet handed out is its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from _chainfixture import FixtureChain, RpcFailure, address_script

from bitcoin_supervisor.interfaces import ComponentSettings
from bitcoin_supervisor.roles.wallet import WalletProcess

FOREIGN = "bcrt1q4w46h2at4w46h2at4w46h2at4w46h2atzmxqe2"


def test_addresses_are_mine_and_listed_with_what_they_received(tmp_path: Path) -> None:
    async def scenario() -> None:
        proc = WalletProcess()
        init = await proc.start(ComponentSettings(name="wallet", role="wallet",
                                                  datadir=str(tmp_path)))
        chain = FixtureChain()
        await init.make_wallet_loader(chain)
        await chain.rpc("createwallet", ["w"])
        paid = await chain.rpc("getnewaddress", ["miner"])
        unused = await chain.rpc("getnewaddress")
        await chain.generate(3, address_script(paid))
        info = await chain.rpc("getaddressinfo", [paid])
        assert info["ismine"] and info["labels"] == ["miner"] and info["iswitness"]
        assert (await chain.rpc("getaddressinfo", [FOREIGN]))["ismine"] is False
        with pytest.raises(RpcFailure) as caught:
            await chain.rpc("getaddressinfo", ["nonsense"])
        assert caught.value.code == -5
        received = await chain.rpc("listreceivedbyaddress")
        assert [(r["address"], r["amount"], r["confirmations"], len(r["txids"]))
                for r in received] == [(paid, 150, 1, 3)]
        everything = await chain.rpc("listreceivedbyaddress", [0, True])
        assert [r["address"] for r in everything] == [paid, unused]
        await proc.stop()

    asyncio.run(scenario())
