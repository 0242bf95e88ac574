"""The index's bitcoind-compatible RPCs: ``getrawtransaction`` and ``getindexinfo``."""

from __future__ import annotations

import string
from typing import Any

from bitcoin.core import CTransaction

from bitcoin_supervisor.interfaces import RpcRequest

from .._diskfull import RPC_DATABASE_ERROR, disk_full_message
from .._jsonrpc import MethodTable, RpcError, bind, expect
from ._decode import decode_transaction
from ._index import INDEX_NAME, IndexImpl

RPC_INVALID_ADDRESS_OR_KEY = -5
RPC_INVALID_PARAMETER = -8
_NOT_FOUND = ("No such mempool or blockchain transaction. "
              "Use gettransaction for wallet transactions.")
# bitcoind's answer while its txindex is still catching up: "not found" would be a lie.
_STILL_SYNCING = ("No such mempool transaction. Blockchain transactions are still in the "
                  "process of being indexed. Use gettransaction for wallet transactions.")


class IndexRpc:
    """Implements the index RPCs over one ``IndexImpl``; see ``handler()``."""

    def __init__(self, index: IndexImpl) -> None:
        self._index = index

    def handler(self, *, component: str = "index") -> MethodTable:
        """Return the RpcHandler serving the index methods (names in ``.names``)."""
        return MethodTable({"getrawtransaction": self.getrawtransaction,
                            "getindexinfo": self.getindexinfo}, component=component)

    async def getrawtransaction(self, request: RpcRequest) -> Any:
        """``getrawtransaction txid [verbosity] [blockhash]``: hex, or the decoded object
        for verbosity >= 1; -5 if not indexed (saying so while the index is still catching
        up, as bitcoind does), -8 for a malformed hash."""
        txid, verbosity, blockhash = bind(request, ("txid", "verbose", "blockhash"))
        txid = parse_hash(txid, "parameter 1")
        wanted_block = None if blockhash is None else parse_hash(blockhash, "parameter 3")
        level = _verbosity(verbosity)
        found = self._index.locate(txid)
        if found is None or (wanted_block is not None and found.block_hash != wanted_block):
            if wanted_block is not None:
                raise RpcError(RPC_INVALID_ADDRESS_OR_KEY,
                               "No such transaction found in the provided block.")
            if self._index.disk_full:  # the transaction may be in a block it could not write
                raise RpcError(RPC_DATABASE_ERROR, disk_full_message(
                    "the index", "record the latest blocks, so it cannot say"))
            synced = (await self._index.get_info()).synced
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, _NOT_FOUND if synced else _STILL_SYNCING)
        if level == 0:
            return found.raw.hex()
        result = decode_transaction(CTransaction.deserialize(found.raw), found.raw)
        if wanted_block is not None:
            result["in_active_chain"] = True
        tip = await self._index.tip_height()
        result["blockhash"] = found.block_hash
        result["confirmations"] = max(tip - found.height + 1, 1)
        result["time"] = found.block_time
        result["blocktime"] = found.block_time
        return result

    async def getindexinfo(self, request: RpcRequest) -> Any:
        """``getindexinfo [index_name]``: ``{"txindex": {synced, best_block_height}}``,
        or ``{}`` when filtered to another index."""
        (name,) = bind(request, ("index_name",))
        name = expect(name, str)
        if name is not None and name != INDEX_NAME:
            return {}
        info = await self._index.get_info()
        return {INDEX_NAME: {"synced": info.synced,
                             "best_block_height": info.best_block_height}}


def parse_hash(value: Any, what: str) -> str:
    """Return ``value`` as a lowercase 64-hex-digit hash; raises RpcError -8 with
    bitcoind's ParseHashV wording otherwise."""
    text: str | None = expect(value, str)
    if text is None:
        raise RpcError(RPC_INVALID_PARAMETER, f"{what} must be hexadecimal string (not '')")
    if any(c not in string.hexdigits for c in text):
        raise RpcError(RPC_INVALID_PARAMETER,
                       f"{what} must be hexadecimal string (not '{text}')")
    if len(text) != 64:
        raise RpcError(RPC_INVALID_PARAMETER,
                       f"{what} must be of length 64 (not {len(text)}, for '{text}')")
    return text.lower()


def _verbosity(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    level = expect(value, int)
    return 0 if level <= 0 else min(level, 2)
