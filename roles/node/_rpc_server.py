"""bitcoind-compatible JSON-RPC over HTTP: cookie auth, JSON-RPC 1.0/2.0, batches, status codes."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bitcoin_supervisor import log
from bitcoin_supervisor.jsonfmt import dumps

from .._diskfull import RPC_DATABASE_ERROR, disk_full_message, is_disk_full
from .._jsonrpc import (
    RPC_INVALID_REQUEST,
    RPC_METHOD_NOT_FOUND,
    RPC_MISC_ERROR,
    RPC_PARSE_ERROR,
    RpcError,
)

RPC_CLIENT_NOT_CONNECTED = -9  # bitcoind: "Shutting down"
RPC_INTERNAL_ERROR = -32603
COOKIE_USER = "__cookie__"
COOKIE_FILE = ".cookie"
_AUTH_FAILURE_DELAY = 0.25  # bitcoind's deterrent against password guessing
_WWW_AUTHENTICATE = 'Basic realm="jsonrpc"'

Dispatch = Callable[[str, "list[Any] | dict[str, Any]", "str | None"], Awaitable[Any]]


@dataclass
class _Envelope:
    """What is known about a request's framing, filled in as parsing gets further."""

    id: Any = None
    has_id: bool = True  # bitcoind answers with "id": null until the request says otherwise
    v2: bool = False

    @property
    def notification(self) -> bool:
        return self.v2 and not self.has_id

    def reply(self, result: Any, error: RpcError | None) -> dict[str, Any]:
        out: dict[str, Any] = {"jsonrpc": "2.0"} if self.v2 else {}
        if not self.v2 or error is None:
            out["result"] = result
        if not self.v2 or error is not None:
            out["error"] = None if error is None else {"code": error.code,
                                                       "message": error.message}
        if self.has_id:
            out["id"] = self.id
        return out


class RpcServer:
    """Serves ``dispatch`` on ``host:port`` for clients holding the datadir's cookie."""

    def __init__(self, datadir: Path, host: str, port: int,
                 on_stop: Callable[[], None]) -> None:
        self._cookie_path = datadir / COOKIE_FILE
        self._host = host
        self._port = port
        self._on_stop = on_stop
        self._stop_pending = False
        self._closing = False
        self._cookie = ""
        self._dispatch: Dispatch | None = None
        self._runner: web.AppRunner | None = None
        self._log = log.get_logger(subsystem="rpc")

    @property
    def port(self) -> int:
        """The bound TCP port (useful when constructed with port 0)."""
        return self._port

    @property
    def cookie_path(self) -> Path:
        """Where the cookie file is written."""
        return self._cookie_path

    async def start(self, dispatch: Dispatch) -> None:
        """Bind, write the cookie file and start serving on the running loop.

        Raises OSError if the address cannot be bound or the cookie cannot be written.
        """
        self._dispatch = dispatch
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.create_server((self._host, self._port), family=family)
        try:
            self._port = sock.getsockname()[1]
            self._cookie = f"{COOKIE_USER}:{secrets.token_hex(32)}"
            _write_private(self._cookie_path, self._cookie)
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()
        except BaseException:
            sock.close()
            raise
        self._log.info("rpc.listening", host=self._host, port=self._port,
                       cookie=str(self._cookie_path))

    def request_stop(self) -> None:
        """Call ``on_stop`` once the reply to the current request has been written."""
        self._stop_pending = True

    async def close(self) -> None:
        """Stop serving (in-flight requests finish) and remove the cookie. Idempotent."""
        self._closing = True
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            self._cookie_path.unlink(missing_ok=True)
            self._log.info("rpc.closed", port=self._port)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405, text="JSONRPC server handles only POST requests")
        if not await self._authorized(request):
            return web.Response(status=401, headers={"WWW-Authenticate": _WWW_AUTHENTICATE})
        if request.path == "/":
            wallet = None
        elif request.path.startswith("/wallet/"):
            wallet = request.path[len("/wallet/"):]  # aiohttp has already URL-decoded it
        else:
            return web.Response(status=404)
        if self._closing:
            # Between close() and the socket going away, bitcoind's own answer.
            status, payload = 500, _Envelope().reply(
                None, RpcError(RPC_CLIENT_NOT_CONNECTED, "Shutting down"))
        else:
            try:
                status, payload = await self._process(await request.read(), wallet)
            except Exception as exc:  # noqa: BLE001 - never aiohttp's plain-text 500
                self._log.error("rpc.failed", error=str(exc), error_type=type(exc).__name__)
                status, payload = 500, _Envelope().reply(
                    None, RpcError(RPC_INTERNAL_ERROR, "Internal error"))

        if payload is None:
            response = web.Response(status=204)
        else:
            try:
                text = dumps(payload)
            except (TypeError, ValueError) as exc:  # a result JSON cannot carry
                self._log.error("rpc.failed", error=str(exc), error_type=type(exc).__name__)
                status, text = 500, dumps(_Envelope().reply(
                    None, RpcError(RPC_INTERNAL_ERROR, "Internal error")))
            response = web.Response(status=status, text=text + "\n",
                                    content_type="application/json")
        if self._stop_pending:
            # bitcoind answers "stop" before it shuts down: flush the reply first.
            await response.prepare(request)
            await response.write_eof()
            self._on_stop()
        return response

    async def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization")
        if header is None:
            return False
        scheme, _, encoded = header.partition(" ")
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            given = b""
        if scheme == "Basic" and hmac.compare_digest(given, self._cookie.encode()):
            return True
        self._log.warning("rpc.auth_failed", peer=request.remote)
        await asyncio.sleep(_AUTH_FAILURE_DELAY)
        return False

    async def _process(self, body: bytes, wallet: str | None) -> tuple[int, Any]:
        """Return (HTTP status, JSON reply or None for 204) for one HTTP request body."""
        try:
            value = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return 500, _Envelope().reply(None, RpcError(RPC_PARSE_ERROR, "Parse error"))
        if isinstance(value, dict):
            return await self._single(value, wallet)
        if isinstance(value, list):
            # Batch elements run in order, one at a time, as in bitcoind.
            replies = [r for r in [await self._one(item, wallet) for item in value]
                       if r is not None]
            if value and not replies:
                return 204, None
            return 200, replies
        error = RpcError(RPC_PARSE_ERROR, "Top-level object parse error")
        return 500, _Envelope().reply(None, error)

    async def _single(self, value: dict[str, Any], wallet: str | None) -> tuple[int, Any]:
        env = _Envelope()
        try:
            method, params = _parse(value, env)
        except RpcError as exc:
            return _http_status(exc.code), env.reply(None, exc)
        try:
            result = await self._execute(method, params, wallet)
        except RpcError as exc:
            # JSON-RPC 2.0 errors travel in a 200 reply; legacy ones set the HTTP status.
            if env.v2:
                return (204, None) if env.notification else (200, env.reply(None, exc))
            return _http_status(exc.code), env.reply(None, exc)
        return (204, None) if env.notification else (200, env.reply(result, None))

    async def _one(self, value: Any, wallet: str | None) -> Any:
        """Run one batch element; return its reply, or None for a notification."""
        env = _Envelope()
        try:
            method, params = _parse(value, env)
            result = await self._execute(method, params, wallet)
        except RpcError as exc:
            return None if env.notification else env.reply(None, exc)
        return None if env.notification else env.reply(result, None)

    async def _execute(self, method: str, params: list[Any] | dict[str, Any],
                       wallet: str | None) -> Any:
        assert self._dispatch is not None
        try:
            return await self._dispatch(method, params, wallet)
        except RpcError:
            raise
        except Exception as exc:
            if is_disk_full(exc):
                self._log.error("rpc.disk_full", method=method, error=str(exc))
                raise RpcError(RPC_DATABASE_ERROR, disk_full_message(
                    "the node", f"write what {method} needed")) from exc
            self._log.error("rpc.failed", method=method, error=str(exc),
                            error_type=type(exc).__name__)
            raise RpcError(RPC_MISC_ERROR, str(exc) or type(exc).__name__) from exc


def _parse(value: Any, env: _Envelope) -> tuple[str, list[Any] | dict[str, Any]]:
    """Read method and params from one request object (bitcoind's JSONRPCRequest::parse)."""
    if not isinstance(value, dict):
        raise RpcError(RPC_INVALID_REQUEST, "Invalid Request object")
    env.has_id = "id" in value
    env.id = value.get("id")
    version = value.get("jsonrpc")
    if version is not None:
        if not isinstance(version, str):
            raise RpcError(RPC_INVALID_REQUEST, "jsonrpc field must be a string")
        if version not in ("1.0", "2.0"):
            raise RpcError(RPC_INVALID_REQUEST, "JSON-RPC version not supported")
        env.v2 = version == "2.0"
    method = value.get("method")
    if method is None:
        raise RpcError(RPC_INVALID_REQUEST, "Missing method")
    if not isinstance(method, str):
        raise RpcError(RPC_INVALID_REQUEST, "Method must be a string")
    params = value.get("params")
    if params is None:
        return method, []
    if not isinstance(params, (list, dict)):
        raise RpcError(RPC_INVALID_REQUEST, "Params must be an array or object")
    return method, params


def _http_status(code: int) -> int:
    if code == RPC_INVALID_REQUEST:
        return 400
    if code == RPC_METHOD_NOT_FOUND:
        return 404
    return 500


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically (temp file, fsync, rename)."""
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
    # O_EXCL|O_NOFOLLOW: a fresh file of our own, never a planted one or a symlink.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
