"""Wallet RPC routing and errors, as a bitcoind client sees them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from _chainfixture import FixtureChain, RpcFailure

from bitcoin_supervisor.interfaces import ComponentSettings
from bitcoin_supervisor.roles.wallet import WalletProcess

NOT_SPECIFIED = ("Wallet file not specified (must request wallet RPC through "
                 "/wallet/<filename> uri-path).")
NOT_LOADED = "Requested wallet does not exist or is not loaded"


def run(tmp_path: Path, body: Callable[[FixtureChain], Awaitable[None]]) -> None:
    async def scenario() -> None:
        proc = WalletProcess()
        init = await proc.start(ComponentSettings(name="wallet", role="wallet",
                                                  datadir=str(tmp_path)))
        chain = FixtureChain()
        await init.make_wallet_loader(chain)
        try:
            await body(chain)
        finally:
            await proc.stop()

    asyncio.run(scenario())


async def error(call: Awaitable[object]) -> tuple[int, str]:
    with pytest.raises(RpcFailure) as caught:
        await call
    return caught.value.code, caught.value.message


def test_one_wallet_is_used_without_a_name(tmp_path: Path) -> None:
    async def body(chain: FixtureChain) -> None:
        assert (await error(chain.rpc("getnewaddress")))[0] == -18  # none loaded
        await chain.rpc("createwallet", {"wallet_name": "only"})
        assert (await chain.rpc("getwalletinfo"))["walletname"] == "only"
        assert (await chain.rpc("getnewaddress", wallet="only")).startswith("bcrt1")

    run(tmp_path, body)


def test_several_wallets_need_a_name(tmp_path: Path) -> None:
    async def body(chain: FixtureChain) -> None:
        await chain.rpc("createwallet", ["b"])
        await chain.rpc("createwallet", ["a"])
        assert await chain.rpc("listwallets") == ["a", "b"]
        assert await error(chain.rpc("getbalance")) == (-19, NOT_SPECIFIED)
        assert await error(chain.rpc("getnewaddress", wallet="c")) == (-18, NOT_LOADED)
        a = await chain.rpc("getnewaddress", wallet="a")
        b = await chain.rpc("getnewaddress", wallet="b")
        assert a != b
        assert (await chain.rpc("getwalletinfo", wallet="b"))["walletname"] == "b"

    run(tmp_path, body)


def test_wallet_lifecycle_errors(tmp_path: Path) -> None:
    async def body(chain: FixtureChain) -> None:
        await chain.rpc("createwallet", ["w"])
        code, message = await error(chain.rpc("createwallet", ["w"]))
        assert code == -4 and "already exists" in message
        assert (await error(chain.rpc("loadwallet", ["w"])))[0] == -35
        assert (await error(chain.rpc("loadwallet", ["nope"])))[0] == -18
        assert (await error(chain.rpc("createwallet", ["../escape"])))[0] == -4
        assert await chain.rpc("unloadwallet", ["w"]) == {"warning": ""}
        assert await chain.rpc("listwallets") == []
        assert await chain.rpc("loadwallet", ["w"]) == {"name": "w", "warning": ""}
        assert await chain.rpc("listwallets") == ["w"]

    run(tmp_path, body)


def test_parameter_errors(tmp_path: Path) -> None:
    async def body(chain: FixtureChain) -> None:
        await chain.rpc("createwallet", ["w"])
        assert (await error(chain.rpc("getnewaddress", ["", "legacy"])))[0] == -5
        assert await error(chain.rpc("getnewaddress", ["", "foo"])) == (
            -5, "Unknown address type 'foo'")
        assert (await chain.rpc("getnewaddress", {"address_type": "bech32"})).startswith(
            "bcrt1q")
        assert (await error(chain.rpc("getbalance", ["x"])))[0] == -32
        assert (await error(chain.rpc("getbalance", ["*", "1"])))[0] == -3
        assert (await error(chain.rpc("listunspent", [1, 9, ["notanaddress"]])))[0] == -5
        assert (await error(chain.rpc("getnewaddress", {"bogus": 1})))[0] == -8

    run(tmp_path, body)
