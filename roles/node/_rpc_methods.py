"""The node's own JSON-RPC methods (bitcoind names, arguments, result shapes, error codes).

Methods other components register through ``Chain.handle_rpc`` are forwarded to them.
"""

from __future__ import annotations

import json
import string
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bitcoin.core import CBlock, b2lx

from bitcoin_supervisor.interfaces import RemoteError, RpcRequest

from .._jsonrpc import (
    RPC_INVALID_ADDRESS_OR_KEY,
    RPC_INVALID_PARAMETER,
    RPC_METHOD_NOT_FOUND,
    RPC_MISC_ERROR,
    RPC_TYPE_ERROR,
    RpcError,
)
from . import _consensus as consensus
from ._chain import NodeChain

_MAX_TIP_AGE = 24 * 60 * 60  # bitcoind's default -maxtipage: older tip means "in IBD"


Params = list[Any]


@dataclass(frozen=True)
class _Method:
    category: str
    args: tuple[str, ...]  # positional order; a trailing "?" marks an optional argument
    summary: str
    run: Callable[[Params], Awaitable[Any]]

    def usage(self, name: str) -> str:
        shown = [f"( {a[:-1]} )" if a.endswith("?") else a for a in self.args]
        return " ".join([name, *shown])


class NodeRpcMethods:
    """Dispatches one JSON-RPC call: the node's methods first, then registered ones."""

    def __init__(self, chain: NodeChain, request_stop: Callable[[], None]) -> None:
        self._chain = chain
        self._request_stop = request_stop
        self._ibd_latched = False
        self._methods: dict[str, _Method] = {
            "getbestblockhash": _Method("Blockchain", (), "Hash of the tip.",
                                        self._getbestblockhash),
            "getblock": _Method("Blockchain", ("blockhash", "verbosity?"),
                                "Block as hex (0) or JSON (1).", self._getblock),
            "getblockchaininfo": _Method("Blockchain", (), "State of the chain.",
                                         self._getblockchaininfo),
            "getblockcount": _Method("Blockchain", (), "Height of the tip.",
                                     self._getblockcount),
            "getblockhash": _Method("Blockchain", ("height",), "Hash at a height.",
                                    self._getblockhash),
            "getblockheader": _Method("Blockchain", ("blockhash", "verbose?"),
                                      "Header as JSON (true) or hex (false).",
                                      self._getblockheader),
            "help": _Method("Control", ("command?",), "List commands, or help for one.",
                            self._help),
            "stop": _Method("Control", (), "Stop the node.", self._stop),
            "generatetoaddress": _Method("Generating", ("nblocks", "address", "maxtries?"),
                                         "Mine blocks paying an address now.",
                                         self._generatetoaddress),
        }

    def names(self) -> list[str]:
        """The node's own method names (no other component may register them)."""
        return sorted(self._methods)

    async def call(self, method: str, params: list[Any] | dict[str, Any],
                   wallet: str | None) -> Any:
        """Run ``method`` and return its JSON-ready result.

        Raises RpcError with bitcoind's code for every failure a client should see.
        """
        spec = self._methods.get(method)
        if spec is None:
            return await self._forward(method, params, wallet)
        return await spec.run(_positional(method, spec, params))

    async def _forward(self, method: str, params: list[Any] | dict[str, Any],
                       wallet: str | None) -> Any:
        try:
            response = await self._chain.forward(RpcRequest(method, json.dumps(params), wallet))
        except RemoteError as exc:
            raise RpcError(RPC_MISC_ERROR, str(exc)) from exc
        if response is None:
            raise RpcError(RPC_METHOD_NOT_FOUND, "Method not found")
        if response.is_error:
            raise RpcError(response.error_code, response.error_message)
        try:
            # Decimal keeps amounts as the handler wrote them (50.00000000, not 50.0).
            return json.loads(response.result_json, parse_float=Decimal)
        except ValueError as exc:
            raise RpcError(RPC_MISC_ERROR, f"{method}: handler returned invalid JSON") from exc

    # --- Blockchain ---

    async def _getbestblockhash(self, params: Params) -> Any:
        return self._chain.hash_hex(self._chain.height)

    async def _getblockcount(self, params: Params) -> Any:
        return self._chain.height

    async def _getblockhash(self, params: Params) -> Any:
        height = _int_arg(params[0])
        if not 0 <= height <= self._chain.height:
            raise RpcError(RPC_INVALID_PARAMETER, "Block height out of range")
        return self._chain.hash_hex(height)

    async def _getblock(self, params: Params) -> Any:
        height = self._find_block(params[0])
        verbosity = _verbosity(params[1] if len(params) > 1 else None, default=1)
        raw = self._chain.read_raw(height)
        if verbosity == 0:
            return raw.hex()
        if verbosity > 1:
            raise RpcError(RPC_INVALID_PARAMETER,
                           "verbosity 2 and 3 are not supported by this node; use 0 or 1")
        block = CBlock.deserialize(raw)
        result = self._header_json(height, block)
        result["strippedsize"] = len(block.serialize({"include_witness": False}))
        result["size"] = len(raw)
        result["weight"] = block.GetWeight()
        result["tx"] = [b2lx(tx.GetTxid()) for tx in block.vtx]
        return result

    async def _getblockheader(self, params: Params) -> Any:
        height = self._find_block(params[0])
        verbose = _verbosity(params[1] if len(params) > 1 else None, default=1)
        block = CBlock.deserialize(self._chain.read_raw(height))
        if verbose == 0:
            return block.get_header().serialize().hex()
        return self._header_json(height, block)

    def _find_block(self, value: Any) -> int:
        block_hash = _hash_arg(value)
        height = self._chain.height_of(block_hash)
        if height is None:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found")
        return height

    def _header_json(self, height: int, block: CBlock) -> dict[str, Any]:
        tip = self._chain.height
        result: dict[str, Any] = {
            "hash": self._chain.hash_hex(height),
            "confirmations": tip - height + 1,
            "height": height,
            "version": block.nVersion,
            "versionHex": f"{block.nVersion & 0xFFFFFFFF:08x}",
            "merkleroot": b2lx(block.hashMerkleRoot),
            "time": block.nTime,
            "mediantime": self._chain.median_time(height),
            "nonce": block.nNonce,
            "bits": f"{block.nBits:08x}",
            "target": f"{consensus.target(block.nBits):064x}",
            "difficulty": _difficulty(block.nBits),
            "chainwork": f"{self._chain.chainwork(height):064x}",
            "nTx": len(block.vtx),
        }
        if height > 0:
            result["previousblockhash"] = self._chain.hash_hex(height - 1)
        if height < tip:
            result["nextblockhash"] = self._chain.hash_hex(height + 1)
        return result

    async def _getblockchaininfo(self, params: Params) -> Any:
        chain = self._chain
        tip = chain.entry(chain.height)
        return {
            "chain": "regtest",
            "blocks": chain.height,
            "headers": chain.height,
            "bestblockhash": chain.hash_hex(chain.height),
            "bits": f"{tip.bits:08x}",
            "target": f"{consensus.target(tip.bits):064x}",
            "difficulty": _difficulty(tip.bits),
            "time": tip.time,
            "mediantime": chain.median_time(chain.height),
            "verificationprogress": 1.0,
            "initialblockdownload": self._in_ibd(tip.time),
            "chainwork": f"{chain.chainwork(chain.height):064x}",
            "size_on_disk": chain.size_on_disk(),
            "pruned": False,
            "warnings": [],
        }

    def _in_ibd(self, tip_time: int) -> bool:
        # Like bitcoind: in IBD until the tip is recent, and never back once out.
        if not self._ibd_latched and tip_time >= time.time() - _MAX_TIP_AGE:
            self._ibd_latched = True
        return not self._ibd_latched

    # --- Generating ---

    async def _generatetoaddress(self, params: Params) -> Any:
        nblocks = _int_arg(params[0])
        if not isinstance(params[1], str):
            raise RpcError(RPC_TYPE_ERROR, _type_message(params[1], "string"))
        max_tries = _int_arg(params[2]) if len(params) > 2 and params[2] is not None \
            else 1_000_000
        try:
            script = consensus.address_to_script(params[1])
        except ValueError as exc:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Error: Invalid address") from exc
        return await self._chain.generate_to_address(nblocks, script, max_tries)

    # --- Control ---

    async def _stop(self, params: Params) -> Any:
        self._request_stop()
        return "Bitcoin Core stopping"

    async def _help(self, params: Params) -> Any:
        command = params[0] if params else None
        if command is not None and not isinstance(command, str):
            raise RpcError(RPC_TYPE_ERROR, _type_message(command, "string"))
        if command:
            spec = self._methods.get(command)
            if spec is not None:
                return f"{spec.usage(command)}\n\n{spec.summary}\n"
            if command in self._chain.routed_methods():
                return f"{command} ...\n\nServed by a component registered with the node.\n"
            return f"help: unknown command: {command}"
        sections: dict[str, list[str]] = {}
        for name, spec in sorted(self._methods.items()):
            sections.setdefault(spec.category, []).append(spec.usage(name))
        routed = self._chain.routed_methods()
        if routed:
            sections["Registered by components"] = routed
        return "\n\n".join(f"== {title} ==\n" + "\n".join(lines)
                           for title, lines in sorted(sections.items()))


def _positional(name: str, spec: _Method, params: list[Any] | dict[str, Any]) -> Params:
    """Map positional or named ``params`` onto ``spec.args``; bitcoind's errors otherwise."""
    names = [a.rstrip("?") for a in spec.args]
    if isinstance(params, dict):
        unknown = [k for k in params if k not in names]
        if unknown:
            raise RpcError(RPC_INVALID_PARAMETER, f"Unknown named parameter {unknown[0]}")
        given = [params.get(n) for n in names]
        while given and given[-1] is None:
            given.pop()
        params = given
    required = sum(1 for a in spec.args if not a.endswith("?"))
    if len(params) > len(names) or len(params) < required or \
            any(params[i] is None for i in range(required)):
        raise RpcError(RPC_MISC_ERROR, spec.usage(name))
    return list(params)


def _difficulty(bits: int) -> float:
    # bitcoind prints doubles with 16 significant digits: same text, same parsed value.
    return float(f"{CBlock.calc_difficulty(bits):.16g}")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _type_message(value: Any, expected: str) -> str:
    return f"JSON value of type {_type_name(value)} is not of expected type {expected}"


def _int_arg(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RpcError(RPC_TYPE_ERROR, _type_message(value, "number"))
    if isinstance(value, float) and not value.is_integer():
        raise RpcError(RPC_TYPE_ERROR, "JSON integer out of range")
    return int(value)


def _hash_arg(value: Any) -> str:
    if not isinstance(value, str):
        raise RpcError(RPC_TYPE_ERROR, _type_message(value, "string"))
    if len(value) != 64:
        raise RpcError(RPC_INVALID_PARAMETER,
                       f"blockhash must be of length 64 (not {len(value)}, for '{value}')")
    if not all(c in string.hexdigits for c in value):
        raise RpcError(RPC_INVALID_PARAMETER,
                       f"blockhash must be hexadecimal string (not '{value}')")
    return value.lower()


def _verbosity(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool):
        return int(value)
    return _int_arg(value)
