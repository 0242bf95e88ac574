"""bitcoind-style JSON-RPC plumbing for role RPC handlers: params, errors, amounts.

Amounts are ``decimal.Decimal`` with 8 places and are written as JSON numbers exactly
as bitcoind prints them (``50.00000000``), which ``json.dumps`` cannot do.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import RpcHandler, RpcRequest, RpcResponse
from bitcoin_supervisor.jsonfmt import dumps

from ._diskfull import RPC_DATABASE_ERROR, disk_full_message, is_disk_full

# bitcoind's error codes (src/rpc/protocol.h) used by the reference roles.
RPC_MISC_ERROR = -1
RPC_TYPE_ERROR = -3
RPC_WALLET_ERROR = -4
RPC_INVALID_ADDRESS_OR_KEY = -5
RPC_INVALID_PARAMETER = -8
RPC_WALLET_NOT_FOUND = -18
RPC_WALLET_NOT_SPECIFIED = -19
RPC_DEPRECATED = -32
RPC_WALLET_ALREADY_LOADED = -35
RPC_METHOD_NOT_FOUND = -32601
RPC_INVALID_REQUEST = -32600
RPC_PARSE_ERROR = -32700

_SATS = Decimal(1).scaleb(-8)


class RpcError(Exception):
    """An RPC-level failure: becomes an error response with a bitcoind code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def btc(sats: int) -> Decimal:
    """Return ``sats`` satoshis as a BTC amount with exactly 8 decimal places."""
    return (Decimal(sats) * _SATS).quantize(_SATS)


def ok(result: Any) -> RpcResponse:
    """Build a success response, keeping Decimal amounts exact."""
    return RpcResponse(result_json=dumps(result))


def bind(request: RpcRequest, names: tuple[str, ...]) -> list[Any]:
    """Return the request's params as a list in ``names`` order, None where omitted.

    Accepts positional (array) and named (object) params like bitcoind. Raises RpcError
    for malformed JSON, too many positional params or an unknown name.
    """
    try:
        params = json.loads(request.params_json)
    except ValueError as exc:
        raise RpcError(RPC_MISC_ERROR, f"params are not valid JSON: {exc}") from exc
    if params is None:
        params = []
    if isinstance(params, list):
        if len(params) > len(names):
            raise RpcError(RPC_MISC_ERROR,
                           f"{request.method} takes at most {len(names)} parameters")
        return params + [None] * (len(names) - len(params))
    if isinstance(params, dict):
        for key in params:
            if key not in names:
                raise RpcError(RPC_INVALID_PARAMETER, f"Unknown named parameter {key}")
        return [params.get(name) for name in names]
    raise RpcError(RPC_TYPE_ERROR, "params must be an array or an object")


_JSON_TYPES: dict[type, str] = {str: "string", bool: "bool", int: "number",
                                float: "number", list: "array", dict: "object"}


def expect(value: Any, kind: type, default: Any = None) -> Any:
    """Return ``value`` checked to be a ``kind`` (``default`` if None).

    Raises RpcError -3 with bitcoind's wording on a type mismatch.
    """
    if value is None:
        return default
    matches = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not matches:
        got = _JSON_TYPES.get(type(value), "value")
        raise RpcError(RPC_TYPE_ERROR, f"JSON value of type {got} is not of expected "
                                       f"type {_JSON_TYPES.get(kind, kind.__name__)}")
    return value


Method = Callable[[RpcRequest], Awaitable[Any]]


class MethodTable(RpcHandler):
    """An RpcHandler dispatching by method name to coroutines returning JSON values.

    ``RpcError`` becomes an error response; a full datadir is answered with -20 "Disk
    full: ..."; any other exception is logged (``rpc.failed``) and answered with -1 so no
    internal detail reaches the peer.
    """

    def __init__(self, methods: dict[str, Method], *, component: str) -> None:
        self._component = component
        self._methods = methods
        self._log = log.get_logger(component=component)

    @property
    def names(self) -> list[str]:
        """The method names served, sorted."""
        return sorted(self._methods)

    async def execute(self, request: RpcRequest) -> RpcResponse:
        """Run one call; never raises."""
        method = self._methods.get(request.method)
        if method is None:
            return RpcResponse.fail(RPC_METHOD_NOT_FOUND, "Method not found")
        try:
            return ok(await method(request))
        except RpcError as exc:
            return RpcResponse.fail(exc.code, exc.message)
        except Exception as exc:  # noqa: BLE001 - RPC boundary: log, answer, keep serving
            if is_disk_full(exc):
                self._log.error("rpc.disk_full", method=request.method, error=str(exc))
                return RpcResponse.fail(RPC_DATABASE_ERROR, disk_full_message(
                    self._component, f"write what {request.method} needed"))
            self._log.error("rpc.failed", method=request.method, error=repr(exc))
            return RpcResponse.fail(RPC_MISC_ERROR, f"{request.method} failed internally")
