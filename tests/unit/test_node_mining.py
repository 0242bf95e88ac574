"""Bitcoin Core's Mining interface over our node's chain: the tip, and waitTipChanged
waiting on the chain's event (with Core's millisecond timeouts) without blocking the
loop."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

from embit import ec, script
from embit.networks import NETWORKS

from bitcoin_supervisor.roles.node import GENESIS_HASH, NodeChain
from bitcoin_supervisor.roles.node._consensus import address_to_script
from bitcoin_supervisor.roles.node._mining import NodeMining

ADDRESS = script.p2wpkh(ec.PrivateKey(bytes.fromhex("22" * 32)).get_public_key()).address(
    NETWORKS["regtest"])


def test_test_chain_and_tip(tmp_path: Path) -> None:
    async def scenario() -> None:
        chain = NodeChain.open(tmp_path / "blocks")
        try:
            mining = NodeMining(chain)
            assert await mining.is_test_chain() is True
            assert await mining.is_initial_block_download() is False
            tip = await mining.get_tip()
            assert tip is not None and (tip.height, tip.hash) == (0, GENESIS_HASH)
        finally:
            await chain.aclose()
    asyncio.run(scenario())


def test_wait_tip_changed_returns_at_once_times_out_or_wakes_on_a_block(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        chain = NodeChain.open(tmp_path / "blocks")
        try:
            mining = NodeMining(chain)
            # Another tip than the current one: no wait at all, whatever the timeout.
            assert (await mining.wait_tip_changed("00" * 32, math.inf)).height == 0
            # Same tip, nothing mined: the tip as it is after the timeout (ms).
            started = time.monotonic()
            same = await mining.wait_tip_changed(GENESIS_HASH, 200.0)
            assert same.height == 0 and time.monotonic() - started >= 0.19
            # NaN and negative timeouts do not wait.
            assert (await mining.wait_tip_changed(GENESIS_HASH, math.nan)).height == 0
            assert (await mining.wait_tip_changed(GENESIS_HASH, -5.0)).height == 0
            # Core's "forever" (infinite): woken by a block mined meanwhile on this loop.
            waiter = asyncio.ensure_future(mining.wait_tip_changed(GENESIS_HASH, math.inf))
            await asyncio.sleep(0)  # let the waiter reach its wait
            assert not waiter.done()
            hashes = await chain.generate_to_address(1, address_to_script(ADDRESS))
            changed = await asyncio.wait_for(waiter, 60)
            assert (changed.height, changed.hash) == (1, hashes[0])
        finally:
            await chain.aclose()
    asyncio.run(scenario())
