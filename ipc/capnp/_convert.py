"""Copying the interfaces' value types into capnp builders and out of capnp readers.

Readers are only valid during the call that produced them, so everything read is copied
(``bytes()`` for Data, ``str()`` for Text) into the frozen dataclasses.
"""

from __future__ import annotations

from typing import Any

from bitcoin_supervisor.interfaces import (
    Block,
    BlockRef,
    IndexedTransaction,
    IndexInfo,
    RpcRequest,
    RpcResponse,
)


def fill_block_ref(builder: Any, ref: BlockRef) -> None:
    """Write ``ref`` into a ``BlockRef`` struct builder."""
    builder.height = ref.height
    builder.hash = ref.hash


def read_block_ref(reader: Any) -> BlockRef:
    """Copy a ``BlockRef`` struct reader into a dataclass."""
    return BlockRef(height=int(reader.height), hash=str(reader.hash))


def fill_block(builder: Any, block: Block) -> None:
    """Write ``block`` into a ``Block`` struct builder."""
    builder.height = block.height
    builder.hash = block.hash
    builder.raw = block.raw


def read_block(reader: Any) -> Block:
    """Copy a ``Block`` struct reader into a dataclass (the raw bytes are copied)."""
    return Block(height=int(reader.height), hash=str(reader.hash), raw=bytes(reader.raw))


def fill_rpc_request(builder: Any, request: RpcRequest) -> None:
    """Write ``request`` into an ``RpcRequest`` builder (``wallet`` None -> hasWallet false)."""
    builder.method = request.method
    builder.paramsJson = request.params_json
    builder.hasWallet = request.wallet is not None
    builder.wallet = request.wallet or ""


def read_rpc_request(reader: Any) -> RpcRequest:
    """Copy an ``RpcRequest`` reader into a dataclass."""
    return RpcRequest(
        method=str(reader.method),
        params_json=str(reader.paramsJson),
        wallet=str(reader.wallet) if reader.hasWallet else None,
    )


def fill_rpc_response(builder: Any, response: RpcResponse) -> None:
    """Write ``response`` into an ``RpcResponse`` builder."""
    builder.resultJson = response.result_json
    builder.errorCode = response.error_code
    builder.errorMessage = response.error_message


def read_rpc_response(reader: Any) -> RpcResponse:
    """Copy an ``RpcResponse`` reader into a dataclass."""
    return RpcResponse(
        result_json=str(reader.resultJson),
        error_code=int(reader.errorCode),
        error_message=str(reader.errorMessage),
    )


def fill_index_info(builder: Any, info: IndexInfo) -> None:
    """Write ``info`` into an ``IndexInfo`` builder."""
    builder.name = info.name
    builder.synced = info.synced
    builder.bestBlockHeight = info.best_block_height


def read_index_info(reader: Any) -> IndexInfo:
    """Copy an ``IndexInfo`` reader into a dataclass."""
    return IndexInfo(
        name=str(reader.name),
        synced=bool(reader.synced),
        best_block_height=int(reader.bestBlockHeight),
    )


def fill_indexed_transaction(builder: Any, tx: IndexedTransaction) -> None:
    """Write ``tx`` into an ``IndexedTransaction`` builder."""
    builder.txid = tx.txid
    builder.raw = tx.raw
    builder.blockHash = tx.block_hash
    builder.blockHeight = tx.block_height


def read_indexed_transaction(reader: Any) -> IndexedTransaction:
    """Copy an ``IndexedTransaction`` reader into a dataclass (the raw bytes are copied)."""
    return IndexedTransaction(
        txid=str(reader.txid),
        raw=bytes(reader.raw),
        block_hash=str(reader.blockHash),
        block_height=int(reader.blockHeight),
    )
