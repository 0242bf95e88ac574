"""Regtest consensus rules the node mines and checks: genesis, PoW, subsidy, BIP34, addresses.

All serialization and hashing is python-bitcoinlib's; bech32 decoding is embit's. Its
``bitcoin.wallet`` is not imported: it loads libssl through ``ctypes.util.find_library``,
which spawns ``ldconfig`` — a process a sandboxed role may not start.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import bitcoin
import bitcoin.base58
import bitcoin.core
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
)
from bitcoin.core.script import (
    OP_0,
    OP_CHECKSIG,
    OP_DUP,
    OP_EQUAL,
    OP_EQUALVERIFY,
    OP_HASH160,
    OP_RETURN,
    CScript,
    CScriptWitness,
)
from embit import bech32

bitcoin.SelectParams("regtest")

GENESIS: CBlock = bitcoin.params.GENESIS_BLOCK
GENESIS_HASH = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
REGTEST_BITS = 0x207FFFFF
HALVING_INTERVAL = 150
MAGIC = bitcoin.params.MESSAGE_START  # fabfb5da: Bitcoin Core's regtest blk*.dat record marker
BLOCK_VERSION = 0x20000000  # BIP9 top bits, what Bitcoin Core mines with
MEDIAN_TIME_SPAN = 11
_WITNESS_NONCE = b"\x00" * 32
_COMMITMENT_MAGIC = b"\xaa\x21\xa9\xed"

assert GENESIS.GetHash() == bitcoin.core.lx(GENESIS_HASH)


class InvalidBlockError(ValueError):
    """A stored or freshly built block breaks a consensus rule this node checks."""


@dataclass(frozen=True)
class MinedBlock:
    """A block found by ``mine_block``: hash (internal byte order), time, bytes, nonce."""

    hash: bytes
    time: int
    raw: bytes
    nonce: int = 0


def subsidy(height: int) -> int:
    """Return the block subsidy in satoshis at ``height`` (50 BTC halving every 150)."""
    halvings = height // HALVING_INTERVAL
    return 0 if halvings >= 64 else (50 * COIN) >> halvings


def target(bits: int) -> int:
    """Return the 256-bit target encoded by compact ``bits``."""
    return int(bitcoin.core.serialize.uint256_from_compact(bits))


def block_work(bits: int) -> int:
    """Return the expected number of hashes for one block at ``bits`` (Core's GetBlockProof)."""
    return (1 << 256) // (target(bits) + 1)


def median_time_past(times: Sequence[int]) -> int:
    """Return the median of the last 11 block times in ``times`` (oldest first)."""
    window = sorted(times[-MEDIAN_TIME_SPAN:])
    return window[len(window) // 2]


def address_to_script(address: str) -> CScript:
    """Return the scriptPubKey a regtest address pays to.

    Accepts bech32/bech32m ``bcrt1…`` and base58 ``m…``/``n…``/``2…`` addresses.
    Raises ValueError for anything else (including other networks' addresses).
    """
    if address.lower().startswith("bcrt1"):
        version, program = bech32.decode("bcrt", address)
        if version is None or program is None:
            raise ValueError("invalid bech32 address")
        return CScript([version, bytes(program)])
    try:
        decoded = bitcoin.base58.CBase58Data(address)
    except bitcoin.base58.Base58Error as exc:
        raise ValueError("invalid base58 address") from exc
    prefixes = bitcoin.params.BASE58_PREFIXES
    if len(decoded) == 20 and decoded.nVersion == prefixes["PUBKEY_ADDR"]:
        return CScript([OP_DUP, OP_HASH160, bytes(decoded), OP_EQUALVERIFY, OP_CHECKSIG])
    if len(decoded) == 20 and decoded.nVersion == prefixes["SCRIPT_ADDR"]:
        return CScript([OP_HASH160, bytes(decoded), OP_EQUAL])
    raise ValueError("invalid base58 address")


def height_script(height: int) -> CScript:
    """Return BIP34's coinbase scriptSig prefix: ``height`` as a minimal script number push."""
    return CScript([height])


def _coinbase(height: int, script_pubkey: CScript) -> CTransaction:
    # Like Bitcoin Core's miner: height then OP_0 in the scriptSig, the full subsidy, and a
    # BIP141 witness commitment. With the coinbase as the only transaction the witness
    # merkle root is all zeros (the coinbase's wtxid counts as zero).
    witness_root = CBlock.build_merkle_tree_from_txids([b"\x00" * 32])[-1]
    commitment = Hash(witness_root + _WITNESS_NONCE)
    txin = CTxIn(COutPoint(), CScript([height, OP_0]), 0xFFFFFFFF)
    outputs = [
        CTxOut(subsidy(height), script_pubkey),
        CTxOut(0, CScript([OP_RETURN, _COMMITMENT_MAGIC + commitment])),
    ]
    witness = CTxWitness([CTxInWitness(CScriptWitness([_WITNESS_NONCE]))])
    return CTransaction([txin], outputs, nLockTime=0, nVersion=2, witness=witness)


def mine_block(height: int, prev_hash: bytes, block_time: int, script_pubkey: CScript,
               max_tries: int) -> MinedBlock | None:
    """Build and grind a coinbase-only block at ``height`` on ``prev_hash``.

    Returns None if no nonce within ``max_tries`` meets the target. CPU-bound, blocking:
    run it off the event loop.
    """
    coinbase = _coinbase(height, script_pubkey)
    merkle_root = coinbase.GetTxid()
    limit = target(REGTEST_BITS)
    for nonce in range(min(max_tries, 1 << 32)):
        header = CBlockHeader(BLOCK_VERSION, prev_hash, merkle_root, block_time, REGTEST_BITS,
                              nonce)
        block_hash = header.GetHash()
        if bitcoin.core.serialize.uint256_from_str(block_hash) <= limit:
            block = CBlock(BLOCK_VERSION, prev_hash, merkle_root, block_time, REGTEST_BITS,
                           nonce, vtx=[coinbase])
            return MinedBlock(block_hash, block_time, block.serialize(), nonce)
    return None


def check_block(raw: bytes, height: int, prev_hash: bytes) -> CBlock:
    """Deserialize ``raw`` and check linkage, PoW, merkle root and (above 0) BIP34 height.

    Returns the block. Raises InvalidBlockError naming the first broken rule.
    """
    block = _decode(raw)
    if height == 0:
        if block.GetHash() != GENESIS.GetHash():
            raise InvalidBlockError("first block is not the regtest genesis block")
        return block
    if block.hashPrevBlock != prev_hash:
        raise InvalidBlockError("block does not link to its predecessor")
    if block.nBits != REGTEST_BITS:
        raise InvalidBlockError("unexpected difficulty bits")
    try:
        bitcoin.core.CheckProofOfWork(block.GetHash(), block.nBits)
    except bitcoin.core.CheckProofOfWorkError as exc:
        raise InvalidBlockError("proof of work fails") from exc
    if not block.vtx or block.hashMerkleRoot != block.vMerkleTree[-1]:
        raise InvalidBlockError("merkle root mismatch")
    prefix = bytes(height_script(height))
    if not bytes(block.vtx[0].vin[0].scriptSig).startswith(prefix):
        raise InvalidBlockError("coinbase does not start with the block height (BIP34)")
    return block


def is_block(raw: bytes) -> bool:
    """True if ``raw`` decodes as a block whose header meets its own proof-of-work target."""
    try:
        block = _decode(raw)
        bitcoin.core.CheckProofOfWork(block.GetHash(), block.nBits)
    except (InvalidBlockError, bitcoin.core.CheckProofOfWorkError):
        return False
    return True


def _decode(raw: bytes) -> CBlock:
    try:
        return CBlock.deserialize(raw)
    except (bitcoin.core.serialize.SerializationError, struct.error, ValueError,
            AssertionError) as exc:
        raise InvalidBlockError(f"undecodable block: {exc}") from exc
