"""The transaction index: follows the chain into its store and answers lookups."""

from __future__ import annotations

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import (
    BlockRef,
    Chain,
    Handler,
    Index,
    IndexedTransaction,
    IndexInfo,
    IpcError,
    RpcHandler,
)

from .._follower import ChainFollower, register_rpc
from ._store import TxIndexStore, TxLocation

INDEX_NAME = "txindex"


class IndexImpl(Index):
    """A txindex over one ``TxIndexStore``, kept at the tip of the attached chain."""

    def __init__(self, store: TxIndexStore, *, component: str = "index") -> None:
        self._store = store
        self._follower = ChainFollower(store, component=component, subject=INDEX_NAME)
        self._rpc: Handler | None = None
        self._log = log.get_logger(component=component)

    async def attach(self, chain: Chain, rpc: RpcHandler, methods: list[str]) -> None:
        """Switch to ``chain``: register ``methods`` -> ``rpc`` with it and start the
        catch-up (in the background: attached is not synced).
        Never raises IpcError (a lost link is logged)."""
        self._rpc = await register_rpc(chain, methods, rpc, self._rpc, self._log)
        await self._follower.attach(chain)

    async def caught_up(self) -> None:
        """Return once the catch-up started by the last attach has ended. Never raises."""
        await self._follower.caught_up()

    @property
    def disk_full(self) -> bool:
        """True while blocks cannot be indexed because the datadir is full."""
        return self._follower.disk_full

    async def get_info(self) -> IndexInfo:
        """Return the name, best indexed height (-1 before genesis) and whether the
        last sync reached the chain's tip."""
        last = self._store.last_block()
        return IndexInfo(name=INDEX_NAME, synced=self._follower.synced,
                         best_block_height=-1 if last is None else last.height)

    async def get_transaction(self, txid: str) -> IndexedTransaction | None:
        """Return the confirmed transaction ``txid`` (hex, any case), or None."""
        found = self.locate(txid.lower())
        if found is None:
            return None
        return IndexedTransaction(txid=found.txid, raw=found.raw,
                                  block_hash=found.block_hash, block_height=found.height)

    def locate(self, txid: str) -> TxLocation | None:
        """Return the stored location of ``txid`` (lowercase hex), or None."""
        return self._store.find(txid)

    async def tip_height(self) -> int:
        """Return the chain's tip height, or the best indexed height when no chain
        answers (so confirmations stay meaningful while the node restarts)."""
        chain = self._follower.chain
        if chain is not None:
            try:
                tip: BlockRef = await chain.get_tip()
                return tip.height
            except IpcError as exc:
                self._log.warning("chain.lost", error=str(exc), during="get_tip")
        last = self._store.last_block()
        return -1 if last is None else last.height

    def close(self) -> None:
        """Stop following without remote calls and close the store."""
        self._follower.forget()
        self._store.close()
