"""Decoding a transaction into bitcoind's JSON shape (``TxToUniv``, regtest addresses)."""

from __future__ import annotations

from typing import Any

from bitcoin.core import CTransaction, b2lx
from bitcoin.core.script import (
    OP_1,
    OP_1NEGATE,
    OP_16,
    OP_PUSHDATA4,
    CScript,
    CScriptInvalidError,
    CScriptOp,
)
from embit import base58, bech32
from embit.descriptor.checksum import add_checksum
from embit.networks import NETWORKS

from .._jsonrpc import btc

_NET = NETWORKS["regtest"]
_OP_RETURN = 0x6A
_OP_CHECKSIG = 0xAC
_OP_CHECKSIGADD = 0xBA


def decode_transaction(tx: CTransaction, raw: bytes) -> dict[str, Any]:
    """Return ``tx`` (serialized as ``raw``) as bitcoind's verbose JSON object, up to
    and including ``hex``; the caller appends the block fields."""
    weight = tx.calc_weight()
    return {
        "txid": b2lx(tx.GetTxid()),
        "hash": b2lx(tx.GetHash()),
        "version": tx.nVersion,
        "size": len(raw),
        "vsize": (weight + 3) // 4,
        "weight": weight,
        "locktime": tx.nLockTime,
        "vin": [_input(tx, i) for i in range(len(tx.vin))],
        "vout": [{"value": btc(out.nValue), "n": n,
                  "scriptPubKey": script_pubkey(bytes(out.scriptPubKey))}
                 for n, out in enumerate(tx.vout)],
        "hex": raw.hex(),
    }


def _input(tx: CTransaction, i: int) -> dict[str, Any]:
    txin = tx.vin[i]
    entry: dict[str, Any]
    if tx.is_coinbase():
        entry = {"coinbase": bytes(txin.scriptSig).hex()}
    else:
        entry = {"txid": b2lx(txin.prevout.hash), "vout": txin.prevout.n,
                 "scriptSig": {"asm": script_asm(bytes(txin.scriptSig)),
                               "hex": bytes(txin.scriptSig).hex()}}
    if i < len(tx.wit.vtxinwit) and len(tx.wit.vtxinwit[i].scriptWitness.stack) > 0:
        entry["txinwitness"] = [bytes(item).hex()
                                for item in tx.wit.vtxinwit[i].scriptWitness.stack]
    entry["sequence"] = txin.nSequence
    return entry


def script_pubkey(script: bytes) -> dict[str, Any]:
    """Return bitcoind's ``scriptPubKey`` object: asm, desc, hex, address (if any), type."""
    kind, address = classify(script)
    if address is not None:
        desc = f"addr({address})"
    elif kind == "pubkey":
        desc = f"pk({script[1:-1].hex()})"
    else:
        desc = f"raw({script.hex()})"
    result: dict[str, Any] = {"asm": script_asm(script), "desc": add_checksum(desc),
                              "hex": script.hex()}
    if address is not None:
        result["address"] = address
    result["type"] = kind
    return result


def classify(script: bytes) -> tuple[str, str | None]:
    """Return bitcoind's script type name and the regtest address (None if none)."""
    n = len(script)
    if n == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return "pubkeyhash", base58.encode_check(_NET["p2pkh"] + script[3:23])
    if n == 23 and script[:2] == b"\xa9\x14" and script[22] == 0x87:
        return "scripthash", base58.encode_check(_NET["p2sh"] + script[2:22])
    if n in (35, 67) and script[0] == n - 2 and script[-1] == _OP_CHECKSIG:
        return "pubkey", None
    if n >= 1 and script[0] == _OP_RETURN:
        return "nulldata", None
    witness = _witness_program(script)
    if witness is None:
        return "nonstandard", None
    version, program = witness
    address = bech32.encode(_NET["bech32"], version, list(program))
    if version == 0 and len(program) == 20:
        return "witness_v0_keyhash", address
    if version == 0 and len(program) == 32:
        return "witness_v0_scripthash", address
    if version == 1 and len(program) == 32:
        return "witness_v1_taproot", address
    if version == 0:
        return "nonstandard", None  # v0 with another length is not a valid program
    return "witness_unknown", address


def _witness_program(script: bytes) -> tuple[int, bytes] | None:
    if not 4 <= len(script) <= 42 or script[1] != len(script) - 2:
        return None
    if script[0] == 0:
        return 0, script[2:]
    if OP_1 <= script[0] <= OP_16:
        return script[0] - OP_1 + 1, script[2:]
    return None


def script_asm(script: bytes) -> str:
    """Return bitcoind's ``asm`` text of ``script`` (without sighash decoding)."""
    words: list[str] = []
    try:
        for opcode, data, _ in CScript(script).raw_iter():
            if opcode <= OP_PUSHDATA4:
                words.append(str(_script_num(data)) if len(data) <= 4 else data.hex())
            else:
                words.append(_op_name(opcode))
    except CScriptInvalidError:
        words.append("[error]")
    return " ".join(words)


def _script_num(data: bytes) -> int:
    if not data:
        return 0
    value = int.from_bytes(data, "little")
    if data[-1] & 0x80:
        return -(value & ~(0x80 << (8 * (len(data) - 1))))
    return value


def _op_name(opcode: int) -> str:
    if opcode == OP_1NEGATE:
        return "-1"
    if OP_1 <= opcode <= OP_16:
        return str(opcode - OP_1 + 1)
    if opcode == _OP_CHECKSIGADD:
        return "OP_CHECKSIGADD"
    name = str(CScriptOp(opcode))
    return "OP_UNKNOWN" if name.startswith("CScriptOp(") else name
