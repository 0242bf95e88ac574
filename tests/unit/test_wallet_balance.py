"""Wallet balances, listunspent and getwalletinfo over real regtest blocks."""

from __future__ import annotations

import asyncio
from pathlib import Path

from _chainfixture import FixtureChain, address_script

from bitcoin_supervisor.interfaces import ComponentSettings
from bitcoin_supervisor.roles.wallet import WalletProcess


def settings(datadir: Path) -> ComponentSettings:
    return ComponentSettings(name="wallet", role="wallet", datadir=str(datadir))


def test_coinbase_matures_after_101_blocks(tmp_path: Path) -> None:
    async def scenario() -> None:
        proc = WalletProcess()
        init = await proc.start(settings(tmp_path))
        chain = FixtureChain()
        loader = await init.make_wallet_loader(chain)
        assert await chain.rpc("createwallet", ["alice"]) == {"name": "alice", "warning": ""}
        address = await chain.rpc("getnewaddress")
        assert address.startswith("bcrt1q")

        await chain.generate(100, address_script(address))
        await chain.rpc("getbalance")
        assert chain.last_json == "0.00000000"
        info = await chain.rpc("getwalletinfo")
        assert '"immature_balance": 5000.00000000' in chain.last_json
        assert info["balance"] == 0 and info["txcount"] == 100
        assert info["lastprocessedblock"]["height"] == 100
        assert await chain.rpc("listunspent") == []

        await chain.generate(1, address_script(address))
        await chain.rpc("getbalance")
        assert chain.last_json == "50.00000000"
        wallet = await loader.get_wallet("alice")
        assert wallet is not None and await wallet.get_balance() == 50 * 100_000_000
        balances = await chain.rpc("getbalances")
        assert balances["mine"]["immature"] == 5000

        (coin,) = await chain.rpc("listunspent")
        assert coin["address"] == address and coin["amount"] == 50
        assert coin["confirmations"] == 101 and coin["spendable"] and coin["safe"]
        assert coin["scriptPubKey"] == address_script(address).hex()
        assert coin["desc"].startswith("wpkh([") and "/84h/1h/0h/0/0]" in coin["desc"]
        assert await chain.rpc("listunspent", [1, 100]) == []
        assert await chain.rpc("listunspent", [1, 9999999, [address]]) == [coin]
        await proc.stop()

    asyncio.run(scenario())


def test_balance_counts_only_the_wallets_own_addresses(tmp_path: Path) -> None:
    async def scenario() -> None:
        proc = WalletProcess()
        init = await proc.start(settings(tmp_path))
        chain = FixtureChain()
        await init.make_wallet_loader(chain)
        await chain.rpc("createwallet", ["alice"])
        await chain.rpc("createwallet", ["bob"])
        alice = await chain.rpc("getnewaddress", ["mining"], wallet="alice")
        bob = await chain.rpc("getnewaddress", wallet="bob")
        await chain.generate(3, address_script(bob))
        await chain.generate(101, address_script(alice))
        assert await chain.rpc("getbalance", wallet="alice") == 50
        assert await chain.rpc("getbalance", wallet="bob") == 150
        assert await chain.rpc("getbalance", ["*", 102], wallet="bob") == 150
        assert await chain.rpc("getbalance", ["*", 104], wallet="bob") == 50
        assert await chain.rpc("getbalance", ["*", 105], wallet="bob") == 0
        (coin,) = await chain.rpc("listunspent", wallet="alice")
        assert coin["label"] == "mining"
        await proc.stop()

    asyncio.run(scenario())
