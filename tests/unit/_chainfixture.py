"""A real in-process ``interfaces.Chain`` over real regtest blocks, for wallet/index tests.

Blocks are built and mined with python-bitcoinlib the way ``generatetoaddress`` does:
BIP34 height in the coinbase, a 50 BTC output to the given script, the segwit witness
commitment, and proof of work against the regtest target. The chain can be forked (a node
restarted with another chain) and killed (every later call raises PeerGoneError).
"""

from __future__ import annotations

import json
from typing import Any

import bitcoin
from bitcoin.core import (
    COIN,
    CBlock,
    CBlockHeader,
    COutPoint,
    CTransaction,
    CTxIn,
    CTxInWitness,
    CTxOut,
    CTxWitness,
    Hash,
    b2lx,
)
from bitcoin.core.script import OP_RETURN, CScript, CScriptWitness
from embit.script import address_to_scriptpubkey

from bitcoin_supervisor.interfaces import (
    Block,
    BlockRef,
    Chain,
    ChainNotifications,
    Handler,
    PeerGoneError,
    RpcHandler,
    RpcRequest,
    RpcResponse,
)

bitcoin.SelectParams("regtest")

REGTEST_BITS = 0x207FFFFF
_TARGET = 0x7FFFFF << (8 * (0x20 - 3))
_WITNESS_RESERVED = b"\x00" * 32


def mine_block(prev: CBlock, height: int, script: bytes, tag: bytes,
               extra_txs: tuple[CTransaction, ...] = ()) -> CBlock:
    """Return a valid regtest block at ``height`` on ``prev`` paying 50 BTC to ``script``."""
    base = CTransaction(
        [CTxIn(COutPoint(), CScript([height, tag]), 0xFFFFFFFF)],
        [CTxOut(50 * COIN, CScript(script))],
        witness=CTxWitness([CTxInWitness(CScriptWitness([_WITNESS_RESERVED]))]))
    wtxids = [b"\x00" * 32] + [tx.GetHash() for tx in extra_txs]
    witness_root = CBlock.build_merkle_tree_from_txids(wtxids)[-1]
    commitment = Hash(witness_root + _WITNESS_RESERVED)
    coinbase = CTransaction(
        base.vin,
        list(base.vout) + [CTxOut(0, CScript([OP_RETURN, b"\xaa\x21\xa9\xed" + commitment]))],
        witness=base.wit)
    vtx = [coinbase, *extra_txs]
    merkle = CBlock.build_merkle_tree_from_txs(vtx)[-1]
    for nonce in range(1 << 32):
        header = CBlockHeader(nVersion=0x20000000, hashPrevBlock=prev.GetHash(),
                              hashMerkleRoot=merkle, nTime=prev.nTime + 1,
                              nBits=REGTEST_BITS, nNonce=nonce)
        if int.from_bytes(header.GetHash(), "little") <= _TARGET:
            return CBlock(header.nVersion, header.hashPrevBlock, merkle, header.nTime,
                          header.nBits, nonce, vtx)
    raise RuntimeError("no nonce found")


def address_script(address: str) -> bytes:
    """Return the scriptPubKey paying ``address`` (what generatetoaddress pays)."""
    return bytes(address_to_scriptpubkey(address).data)


class _Registration(Handler):
    def __init__(self, owner: FixtureChain, kind: str, item: Any) -> None:
        self._owner, self._kind, self._item = owner, kind, item

    async def disconnect(self) -> None:
        self._owner._check_alive()
        self._owner.unregister(self._kind, self._item)


class FixtureChain(Chain):
    """An active chain of real blocks starting at the regtest genesis block."""

    def __init__(self, blocks: list[CBlock] | None = None, tag: bytes = b"A") -> None:
        self.blocks: list[CBlock] = blocks or [bitcoin.params.GENESIS_BLOCK]
        self.tag = tag
        self.notifications: list[ChainNotifications] = []
        self.rpc_methods: dict[str, RpcHandler] = {}
        self.dead = False
        self.calls_left: int | None = None  # die after this many more calls

    def fork(self, height: int, tag: bytes) -> FixtureChain:
        """Return a new chain sharing blocks 0..height (another node's chain)."""
        return FixtureChain(self.blocks[: height + 1], tag=tag)

    def kill(self) -> None:
        """Make every later call raise PeerGoneError (the node process died)."""
        self.dead = True

    def mine(self, count: int, script: bytes) -> list[Block]:
        """Append ``count`` blocks paying ``script`` without notifying anyone."""
        for _ in range(count):
            self.blocks.append(mine_block(self.blocks[-1], len(self.blocks), script, self.tag))
        return [self._block(h) for h in range(len(self.blocks) - count, len(self.blocks))]

    async def generate(self, count: int, script: bytes) -> list[Block]:
        """Mine ``count`` blocks, notifying each registration in order (like the node)."""
        mined = []
        for _ in range(count):
            (block,) = self.mine(1, script)
            for receiver in list(self.notifications):
                await receiver.block_connected(block)
            mined.append(block)
        return mined

    async def disconnect_tip(self) -> None:
        """Remove the tip (invalidateblock) and notify."""
        block = self._block(len(self.blocks) - 1)
        self.blocks.pop()
        for receiver in list(self.notifications):
            await receiver.block_disconnected(block)

    async def rpc(self, method: str, params: Any = (), wallet: str | None = None) -> Any:
        """Call a registered RPC like the node's endpoint; returns the parsed result or
        raises RpcFailure. Also exposes the raw JSON text as ``last_json``."""
        handler = self.rpc_methods[method]
        if not isinstance(params, dict):
            params = list(params)
        response: RpcResponse = await handler.execute(
            RpcRequest(method=method, params_json=json.dumps(params), wallet=wallet))
        if response.is_error:
            raise RpcFailure(response.error_code, response.error_message)
        self.last_json = response.result_json
        return json.loads(response.result_json)

    def unregister(self, kind: str, item: Any) -> None:
        if kind == "notifications" and item in self.notifications:
            self.notifications.remove(item)
        if kind == "rpc":
            for name in [n for n, h in self.rpc_methods.items() if h is item]:
                del self.rpc_methods[name]

    def _check_alive(self) -> None:
        if self.calls_left is not None:
            self.calls_left -= 1
            if self.calls_left < 0:
                self.dead = True
        if self.dead:
            raise PeerGoneError("node link closed")

    def _block(self, height: int) -> Block:
        cblock = self.blocks[height]
        return Block(height=height, hash=b2lx(cblock.GetHash()), raw=cblock.serialize())

    async def get_tip(self) -> BlockRef:
        self._check_alive()
        return BlockRef(len(self.blocks) - 1, b2lx(self.blocks[-1].GetHash()))

    async def get_block_hash(self, height: int) -> str | None:
        self._check_alive()
        return b2lx(self.blocks[height].GetHash()) if height < len(self.blocks) else None

    async def get_block(self, height: int) -> Block | None:
        self._check_alive()
        return self._block(height) if height < len(self.blocks) else None

    async def handle_notifications(self, notifications: ChainNotifications) -> Handler:
        self._check_alive()
        self.notifications.append(notifications)
        return _Registration(self, "notifications", notifications)

    async def handle_rpc(self, methods: list[str], handler: RpcHandler) -> Handler:
        self._check_alive()
        for name in methods:
            self.rpc_methods[name] = handler
        return _Registration(self, "rpc", handler)


class RpcFailure(Exception):
    """An RPC error response, as a bitcoind client would surface it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
