"""Converters between the interfaces' values and capnp fields, named by the method table.

Readers are only valid during the call that produced them, so everything read is copied
(``bytes()`` for Data, ``str()`` for Text) into the frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bitcoin_supervisor.interfaces import (
    Block,
    BlockRef,
    ChainGrant,
    ChainLimits,
    ConsumerHealth,
    IndexedTransaction,
    IndexInfo,
    RpcRequest,
    RpcResponse,
)


@dataclass(frozen=True)
class Value:
    """A field whose capnp value maps onto one Python value (``wire`` is its capnp type).

    ``copy`` turns the reader's value into a Python value that outlives the call;
    ``prepare`` turns a Python value into what pycapnp accepts for the field.
    """

    wire: str
    copy: Callable[[Any], Any]
    prepare: Callable[[Any], Any] | None = None

    def put(self, builder: Any, field: str, value: Any) -> None:
        """Set ``field`` of ``builder`` to ``value``."""
        setattr(builder, field, value if self.prepare is None else self.prepare(value))

    def get(self, reader: Any, field: str) -> Any:
        """Return a copy of ``field`` of ``reader``."""
        return self.copy(getattr(reader, field))


@dataclass(frozen=True)
class Struct:
    """A struct field filled from and read into one of the interfaces' dataclasses."""

    wire: str
    fill: Callable[[Any, Any], None]
    read: Callable[[Any], Any]

    def put(self, builder: Any, field: str, value: Any) -> None:
        """Initialise ``field`` of ``builder`` and fill it from ``value``."""
        self.fill(builder.init(field), value)

    def get(self, reader: Any, field: str) -> Any:
        """Return ``field`` of ``reader`` copied into its dataclass."""
        return self.read(getattr(reader, field))


@dataclass(frozen=True)
class Capability:
    """A capability field: an interfaces object on one side, a capnp capability on the
    wire. Which proxy or server it becomes depends on the link, so ``_servers`` does it."""

    interface: str

    @property
    def wire(self) -> str:
        """The capnp interface name, as the schema spells the field's type."""
        return self.interface


Converter = Value | Struct | Capability


def fill_block_ref(builder: Any, ref: BlockRef) -> None:
    """Write ``ref`` into a ``BlockRef`` struct builder."""
    builder.height = ref.height
    builder.hash = ref.hash


def read_block_ref(reader: Any) -> BlockRef:
    """Copy a ``BlockRef`` struct reader into a dataclass."""
    return BlockRef(height=int(reader.height), hash=str(reader.hash))


def fill_core_block_ref(builder: Any, ref: BlockRef) -> None:
    """Write ``ref`` into Bitcoin Core's ``BlockRef`` (hash as uint256 bytes)."""
    builder.hash = hash_to_bytes(ref.hash)
    builder.height = ref.height


def read_core_block_ref(reader: Any) -> BlockRef:
    """Copy Bitcoin Core's ``BlockRef`` into a dataclass (display-hex hash)."""
    return BlockRef(height=int(reader.height), hash=hash_from_bytes(reader.hash))


def hash_to_bytes(display: str) -> bytes:
    """A display-hex block hash as Bitcoin Core serializes a uint256: its 32 bytes in
    internal order, the reverse of the hex shown by RPC. ValueError for bad hex."""
    raw = bytes.fromhex(display)
    if len(raw) != 32:
        raise ValueError(f"a block hash has 32 bytes, not {len(raw)}")
    return raw[::-1]


def hash_from_bytes(raw: Any) -> str:
    """The display hex of a uint256 serialized by Bitcoin Core (any length is shown as
    it came: a peer's malformed hash is data, not an error here)."""
    return bytes(raw)[::-1].hex()


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


_LIMIT_FIELDS = (("max_rpc_names", "maxRpcNames"), ("max_name_length", "maxNameLength"),
                 ("max_registrations", "maxRegistrations"),
                 ("max_calls_in_flight", "maxCallsInFlight"),
                 ("max_message_bytes", "maxMessageBytes"),
                 ("notify_queue_depth", "notifyQueueDepth"),
                 ("notify_deadline_ms", "notifyDeadlineMs"),
                 ("lagging_restart_ms", "laggingRestartMs"))


def fill_chain_grant(builder: Any, grant: ChainGrant) -> None:
    """Write ``grant`` into a ``ChainGrant`` builder."""
    builder.consumer = grant.consumer
    builder.rpcMethods = list(grant.rpc_methods)
    owned = builder.init("ownedElsewhere", len(grant.owned_elsewhere))
    for entry, (name, owner) in zip(owned, grant.owned_elsewhere, strict=True):
        entry.name = name
        entry.owner = owner
    limits = builder.init("limits")
    for name, wire in _LIMIT_FIELDS:
        setattr(limits, wire, getattr(grant.limits, name))


def read_chain_grant(reader: Any) -> ChainGrant:
    """Copy a ``ChainGrant`` reader into a dataclass."""
    limits = ChainLimits(**{name: int(getattr(reader.limits, wire))
                            for name, wire in _LIMIT_FIELDS})
    return ChainGrant(consumer=str(reader.consumer),
                      rpc_methods=tuple(str(m) for m in reader.rpcMethods), limits=limits,
                      owned_elsewhere=tuple((str(e.name), str(e.owner))
                                            for e in reader.ownedElsewhere))


def fill_chain_health(builder: Any, health: tuple[ConsumerHealth, ...]) -> None:
    """Write consumers' notification health into a ``ChainHealth`` builder."""
    entries = builder.init("consumers", len(health))
    for entry, item in zip(entries, health, strict=True):
        entry.consumer = item.consumer
        entry.lagging = item.lagging
        entry.laggingMs = min(int(item.lagging_s * 1000), 2**32 - 1)


def read_chain_health(reader: Any) -> tuple[ConsumerHealth, ...]:
    """Copy a ``ChainHealth`` reader into dataclasses."""
    return tuple(ConsumerHealth(consumer=str(e.consumer), lagging=bool(e.lagging),
                                lagging_s=int(e.laggingMs) / 1000) for e in reader.consumers)


TEXT = Value("Text", str)
BOOL = Value("Bool", bool)
INT32 = Value("Int32", int)
UINT32 = Value("UInt32", int)
INT64 = Value("Int64", int)
FLOAT64 = Value("Float64", float)
UINT256 = Value("Data", hash_from_bytes, hash_to_bytes)  # a block hash, Core's uint256
TEXT_LIST = Value("List(Text)", lambda names: [str(name) for name in names], list)
BLOCK_REF = Struct("BlockRef", fill_block_ref, read_block_ref)
BLOCK = Struct("Block", fill_block, read_block)
CORE_BLOCK_REF = Struct("CoreBlockRef", fill_core_block_ref, read_core_block_ref)
RPC_REQUEST = Struct("RpcRequest", fill_rpc_request, read_rpc_request)
RPC_RESPONSE = Struct("RpcResponse", fill_rpc_response, read_rpc_response)
INDEX_INFO = Struct("IndexInfo", fill_index_info, read_index_info)
INDEXED_TRANSACTION = Struct("IndexedTransaction", fill_indexed_transaction,
                             read_indexed_transaction)
CHAIN_GRANT = Struct("ChainGrant", fill_chain_grant, read_chain_grant)
CHAIN_HEALTH = Struct("ChainHealth", fill_chain_health, read_chain_health)
