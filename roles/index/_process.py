"""The index process: its Init (the capability it serves) and its start/stop life cycle."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import Chain, ComponentSettings, Echo, Index, Init

from .._echo import EchoImpl
from ._index import IndexImpl
from ._rpc import IndexRpc
from ._store import TxIndexStore


class IndexInit(Init):
    """The index's bootstrap capability: Echo and the Index."""

    def __init__(self, index: IndexImpl, *, component: str = "index") -> None:
        self._index = index
        self._rpc = IndexRpc(index).handler(component=component)

    async def make_echo(self) -> Echo:
        """Return a new Echo."""
        return EchoImpl()

    async def make_index(self, chain: Chain) -> Index:
        """Attach ``chain`` (replacing any earlier one), register the index RPCs with it,
        and return the Index once attached; the catch-up to the tip continues in the
        background (``getindexinfo`` shows it). A lost chain is logged, not raised."""
        await self._index.attach(chain, self._rpc, self._rpc.names)
        return self._index


class IndexProcess:
    """Life cycle of the index role for ``roles._main.run_role``."""

    def __init__(self) -> None:
        self.stop_requested = asyncio.Event()
        self.listeners: list[socket.socket] = []  # served on the inherited link only
        self._index: IndexImpl | None = None

    async def start(self, settings: ComponentSettings) -> Init:
        """Open ``<datadir>/txindex.sqlite`` and return the IndexInit.

        Raises OSError or sqlite3.Error if the datadir cannot be used.
        """
        datadir = Path(settings.datadir)
        datadir.mkdir(parents=True, exist_ok=True)
        index = IndexImpl(TxIndexStore.open(datadir), component=settings.name)
        info = await index.get_info()
        log.get_logger(component=settings.name).info(
            "index.started", best_block_height=info.best_block_height)
        self._index = index
        return IndexInit(index, component=settings.name)

    async def stop(self) -> None:
        """Close the index file; all acknowledged writes are already durable."""
        if self._index is not None:
            self._index.close()
            self._index = None
