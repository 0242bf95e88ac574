"""Bitcoin Core's Mining interface over our node's chain, for Core-side clients (a
template provider, Core's own test tools) that call ``Init.makeMining``."""

from __future__ import annotations

import math

from bitcoin_supervisor.interfaces import BlockRef, Mining

from ._chain import NodeChain

# Core's default timeout is "forever" (MillisecondsDouble::max()); anything this long is
# treated as no limit, since asyncio cannot schedule a timer ~1e300 ms away.
_FOREVER_MS = 1e12


class NodeMining(Mining):
    """``interfaces::Mining`` of a regtest node: always a test chain, never in initial
    block download (it has no peers to download from)."""

    def __init__(self, chain: NodeChain) -> None:
        self._chain = chain

    async def is_test_chain(self) -> bool:
        """Return True: the node only runs regtest."""
        return True

    async def is_initial_block_download(self) -> bool:
        """Return False: a regtest node mines its own chain."""
        return False

    async def get_tip(self) -> BlockRef | None:
        """Return the current tip (genesis on a fresh chain); never None."""
        return await self._chain.get_tip()

    async def wait_tip_changed(self, current_tip: str, timeout_ms: float) -> BlockRef:
        """Return the tip once it differs from ``current_tip`` or after ``timeout_ms``
        (NaN or negative: no wait; infinite or over ~30 years: no limit). Awaits the
        chain's tip event, so the node's loop keeps serving meanwhile."""
        if math.isnan(timeout_ms):
            timeout_ms = 0.0
        timeout_s = None if timeout_ms >= _FOREVER_MS else max(0.0, timeout_ms) / 1000
        return await self._chain.wait_tip_changed(current_tip, timeout_s)
