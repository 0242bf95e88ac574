"""The wallet follows whichever chain it was given last: restarts, forks, lost links."""

from __future__ import annotations

import asyncio
from pathlib import Path

from _chainfixture import FixtureChain, address_script
from structlog.testing import capture_logs

from bitcoin_supervisor.interfaces import ComponentSettings, Init
from bitcoin_supervisor.roles.wallet import WalletProcess
from bitcoin_supervisor.roles.wallet._wallet import WalletLoaderImpl

OTHER = bytes.fromhex("0014" + "11" * 20)  # somebody else's P2WPKH


async def started(datadir: Path) -> tuple[WalletProcess, Init]:
    proc = WalletProcess()
    init = await proc.start(ComponentSettings(name="wallet", role="wallet",
                                              datadir=str(datadir)))
    return proc, init


async def funded(init: Init, chain: FixtureChain) -> bytes:
    """Attach, create a wallet and mine 101 blocks to it: 50 BTC spendable."""
    await init.make_wallet_loader(chain)
    await chain.rpc("createwallet", ["w"])
    script = address_script(await chain.rpc("getnewaddress"))
    await chain.generate(101, script)
    assert await chain.rpc("getbalance") == 50
    return script


def test_reattach_to_a_restarted_node_with_the_same_chain(tmp_path: Path) -> None:
    async def scenario() -> None:
        proc, init = await started(tmp_path)
        old = FixtureChain()
        script = await funded(init, old)
        new = FixtureChain(list(old.blocks))  # the node came back with its chain
        new.mine(10, OTHER)  # and mined while the wallet was not attached
        old.kill()
        await init.make_wallet_loader(new)
        assert new.rpc_methods and len(new.notifications) == 1
        await new.generate(1, script)
        info = await new.rpc("getwalletinfo")
        assert info["lastprocessedblock"]["height"] == 112
        # ours: 1..101 and 112; mature (>= 101 confirmations at 112): heights 1..12
        assert info["balance"] == 12 * 50 and info["immature_balance"] == 90 * 50
        await proc.stop()

    asyncio.run(scenario())


def test_node_restarted_with_another_chain_rewinds_to_the_fork(tmp_path: Path) -> None:
    async def scenario() -> None:
        proc, init = await started(tmp_path)
        old = FixtureChain()
        await funded(init, old)
        other = old.fork(10, tag=b"B")  # shares blocks 0..10 only
        other.mine(5, OTHER)
        with capture_logs() as logs:
            loader = await init.make_wallet_loader(other)
            assert isinstance(loader, WalletLoaderImpl)
            await loader.caught_up()  # attached first, caught up in the background
        assert {"event": "block.rewound", "from_height": 101, "to_height": 10} in [
            {k: e[k] for k in ("event", "from_height", "to_height") if k in e} for e in logs]
        info = await other.rpc("getwalletinfo")
        assert info["lastprocessedblock"]["height"] == 15
        assert info["lastprocessedblock"]["hash"] == (await other.get_tip()).hash
        # only blocks 1..10 of the shared part paid the wallet
        assert info["balance"] == 0 and info["immature_balance"] == 10 * 50
        assert info["txcount"] == 10
        await proc.stop()

    asyncio.run(scenario())


def test_disconnected_block_is_undone(tmp_path: Path) -> None:
    async def scenario() -> None:
        proc, init = await started(tmp_path)
        chain = FixtureChain()
        await funded(init, chain)
        await chain.disconnect_tip()
        info = await chain.rpc("getwalletinfo")
        assert info["lastprocessedblock"]["height"] == 100
        assert info["balance"] == 0 and info["immature_balance"] == 100 * 50
        await proc.stop()

    asyncio.run(scenario())


def test_node_dying_mid_sync_is_logged_and_recovered(tmp_path: Path) -> None:
    async def scenario() -> None:
        proc, init = await started(tmp_path)
        chain = FixtureChain()
        script = await funded(init, chain)
        await proc.stop()
        chain.notifications.clear()
        chain.mine(60, script)

        proc, init = await started(tmp_path)
        dying = FixtureChain(list(chain.blocks))
        dying.calls_left = 25  # the node dies part-way through the catch-up
        with capture_logs() as logs:
            loader = await init.make_wallet_loader(dying)
            assert isinstance(loader, WalletLoaderImpl)
            await loader.caught_up()
        assert "chain.lost" in [e["event"] for e in logs]
        wallet = await loader.get_wallet("w")
        assert wallet is not None
        last = await wallet.get_last_block()
        assert last is not None and 101 < last.height < 161  # partial, consistent
        healthy = FixtureChain(list(chain.blocks))
        await init.make_wallet_loader(healthy)
        info = await healthy.rpc("getwalletinfo")
        assert info["lastprocessedblock"]["height"] == 161
        assert info["balance"] == 61 * 50
        await proc.stop()

    asyncio.run(scenario())


def test_node_dying_during_a_notification_does_not_raise(tmp_path: Path) -> None:
    async def scenario() -> None:
        proc, init = await started(tmp_path)
        chain = FixtureChain()
        script = await funded(init, chain)
        chain.mine(3, script)  # missed: the next notification must fetch them
        chain.calls_left = 2
        with capture_logs() as logs:
            await chain.generate(1, script)
        assert "chain.lost" in [e["event"] for e in logs]
        # a wallet can still be created while the chain is gone
        chain.dead = True
        assert (await chain.rpc("createwallet", ["later"]))["name"] == "later"
        await proc.stop()

    asyncio.run(scenario())
