"""Wallet state survives reopening and kill -9, and catches up on blocks it missed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from _chainfixture import FixtureChain, address_script

from bitcoin_supervisor.interfaces import ComponentSettings, Init
from bitcoin_supervisor.roles.wallet import WalletProcess

HERE = Path(__file__).parent


def settings(datadir: Path) -> ComponentSettings:
    return ComponentSettings(name="wallet", role="wallet", datadir=str(datadir))


async def started(datadir: Path) -> tuple[WalletProcess, Init]:
    proc = WalletProcess()
    return proc, await proc.start(settings(datadir))


def test_reopen_keeps_wallets_and_catches_up(tmp_path: Path) -> None:
    async def scenario() -> None:
        chain = FixtureChain()
        proc, init = await started(tmp_path)
        await init.make_wallet_loader(chain)
        await chain.rpc("createwallet", ["keep"])
        address = await chain.rpc("getnewaddress", ["coinbase"])
        await chain.generate(101, address_script(address))
        await proc.stop()

        # Blocks mined while no wallet process runs are picked up on the next attach.
        chain.notifications.clear()
        chain.mine(100, address_script(address))
        proc, init = await started(tmp_path)
        loader = await init.make_wallet_loader(chain)
        assert await loader.list_wallets() == ["keep"]
        info = await chain.rpc("getwalletinfo")
        assert info["lastprocessedblock"]["height"] == 201
        assert info["balance"] == 101 * 50 and info["immature_balance"] == 100 * 50
        second = await chain.rpc("getnewaddress")
        assert second != address
        (coin, *_) = await chain.rpc("listunspent")
        assert coin["label"] == "coinbase"
        await proc.stop()

    asyncio.run(scenario())


_CHILD = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, {here!r})
    from _chainfixture import FixtureChain
    from bitcoin_supervisor import log
    from bitcoin_supervisor.interfaces import ComponentSettings
    from bitcoin_supervisor.roles.wallet import WalletProcess

    async def main():
        log.configure(stream=sys.stderr)
        proc = WalletProcess()
        init = await proc.start(ComponentSettings(name="wallet", role="wallet",
                                                  datadir={datadir!r}))
        chain = FixtureChain()
        await init.make_wallet_loader(chain)
        await chain.rpc("createwallet", ["victim"])
        while True:  # acknowledge each address only after the RPC returned
            print(await chain.rpc("getnewaddress"), flush=True)

    asyncio.run(main())
""")


def test_acknowledged_addresses_survive_kill_9(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(here=str(HERE), datadir=str(tmp_path))],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert child.stdout is not None
    acknowledged = [child.stdout.readline().strip() for _ in range(25)]
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert all(a.startswith("bcrt1q") for a in acknowledged)

    async def scenario() -> None:
        proc, init = await started(tmp_path)
        chain = FixtureChain()
        loader = await init.make_wallet_loader(chain)
        wallet = await loader.get_wallet("victim")
        assert wallet is not None
        assert all(wallet.owns(a) for a in acknowledged)
        fresh = await chain.rpc("getnewaddress")
        assert fresh not in acknowledged
        await chain.generate(101, address_script(acknowledged[-1]))
        assert await chain.rpc("getbalance") == 50
        await proc.stop()

    asyncio.run(scenario())
