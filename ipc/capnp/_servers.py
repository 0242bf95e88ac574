"""Servers: ``interfaces`` implementations exported as capnp capabilities (Bitcoin
Core's ProxyServer). Failures cross the link as one line; the details stay in our log."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Generic, TypeVar

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import (
    Chain,
    ChainNotifications,
    Echo,
    Handler,
    Index,
    Init,
    RpcHandler,
    SupervisorError,
    Wallet,
    WalletLoader,
)

from . import _clients, _convert, _errors
from ._link import Link
from ._schema import load_schemas

_S = load_schemas()
_logger = log.get_logger()

# pycapnp builds one Server base class per interface at load time; mypy sees them as Any.
_ThreadBase: Any = _S.proxy.Thread.Server
_ThreadMapBase: Any = _S.proxy.ThreadMap.Server
_EchoBase: Any = _S.echo.Echo.Server
_HandlerBase: Any = _S.chain.Handler.Server
_ChainNotificationsBase: Any = _S.chain.ChainNotifications.Server
_RpcHandlerBase: Any = _S.chain.RpcHandler.Server
_ChainBase: Any = _S.chain.Chain.Server
_WalletBase: Any = _S.wallet.Wallet.Server
_WalletLoaderBase: Any = _S.wallet.WalletLoader.Server
_IndexBase: Any = _S.index.Index.Server
_InitBase: Any = _S.init.Init.Server

T = TypeVar("T")
ServerT = TypeVar("ServerT", bound="_ServerBase[Any]")


class _ServerBase(Generic[T]):
    """Common part of every server: the implementation it forwards to and its link.

    It must come first in a server's bases: pycapnp's generated ``Server.__init__``
    takes no arguments and would otherwise shadow this one.
    """

    _interface: ClassVar[str] = ""

    def __init__(self, impl: T, link: Link) -> None:
        self._impl = impl
        self._link = link

    async def _dispatch(self, method: str, body: Awaitable[None]) -> None:
        started = time.perf_counter()
        try:
            await body
        except Exception as exc:  # the peer's call boundary: log it here, one line there
            self._log_failure(method, exc)
            self._link.log_call(self._interface, method, "server", started,
                                error=f"{type(exc).__name__}: {exc}")
            raise _errors.sanitised(exc) from None
        self._link.log_call(self._interface, method, "server", started)

    def _log_failure(self, method: str, exc: Exception) -> None:
        keys = {"interface": self._interface, "method": method,
                "component": self._link.component, "error": f"{type(exc).__name__}: {exc}"}
        if isinstance(exc, SupervisorError):
            # Expected failures (NotProvidedError, PeerGoneError...): the line says it all.
            _logger.warning("ipc.call_failed", **keys)
        else:
            _logger.error("ipc.call_failed", exc_info=exc, **keys)


def _served(fn: Callable[[ServerT, Any], Awaitable[None]]
            ) -> Callable[[ServerT, Any], Awaitable[None]]:
    """Turn ``<method>_context(self, context)`` into a logged, sanitised capnp method."""
    method = fn.__name__.removesuffix("_context")

    @functools.wraps(fn)
    async def wrapper(self: ServerT, context: Any) -> None:
        await self._dispatch(method, fn(self, context))

    return wrapper


class ThreadServer(_ServerBase[str], _ThreadBase):  # type: ignore[misc]
    """A libmultiprocess ``Thread`` handle; Python servers run every call on their loop."""

    _interface = "Thread"

    @_served
    async def getName_context(self, context: Any) -> None:
        context.results.result = self._impl


class ThreadMapServer(_ServerBase[None], _ThreadMapBase):  # type: ignore[misc]
    """Hands out ``Thread`` handles so libmultiprocess-style clients can fill Context."""

    _interface = "ThreadMap"

    @_served
    async def makeThread_context(self, context: Any) -> None:
        context.results.result = ThreadServer(str(context.params.name), self._link)


class EchoServer(_ServerBase[Echo], _EchoBase):  # type: ignore[misc]
    """Serves an ``Echo`` implementation."""

    _interface = "Echo"

    @_served
    async def destroy_context(self, context: Any) -> None:
        # Python objects are freed when the last capability goes; nothing to destroy.
        return None

    @_served
    async def echo_context(self, context: Any) -> None:
        context.results.result = await self._impl.echo(str(context.params.echo))


class HandlerServer(_ServerBase[Handler], _HandlerBase):  # type: ignore[misc]
    """Serves a ``Handler`` registration."""

    _interface = "Handler"

    @_served
    async def disconnect_context(self, context: Any) -> None:
        await self._impl.disconnect()


class ChainNotificationsServer(_ServerBase[ChainNotifications],
                               _ChainNotificationsBase):  # type: ignore[misc]
    """Serves ``ChainNotifications`` callbacks."""

    _interface = "ChainNotifications"

    @_served
    async def blockConnected_context(self, context: Any) -> None:
        await self._impl.block_connected(_convert.read_block(context.params.block))

    @_served
    async def blockDisconnected_context(self, context: Any) -> None:
        await self._impl.block_disconnected(_convert.read_block(context.params.block))


class RpcHandlerServer(_ServerBase[RpcHandler], _RpcHandlerBase):  # type: ignore[misc]
    """Serves an ``RpcHandler``."""

    _interface = "RpcHandler"

    @_served
    async def execute_context(self, context: Any) -> None:
        response = await self._impl.execute(_convert.read_rpc_request(context.params.request))
        _convert.fill_rpc_response(context.results.init("result"), response)


class ChainServer(_ServerBase[Chain], _ChainBase):  # type: ignore[misc]
    """Serves a ``Chain``; callbacks it receives become client proxies on the same link."""

    _interface = "Chain"

    @_served
    async def getTip_context(self, context: Any) -> None:
        _convert.fill_block_ref(context.results.init("result"), await self._impl.get_tip())

    @_served
    async def getBlockHash_context(self, context: Any) -> None:
        block_hash = await self._impl.get_block_hash(int(context.params.height))
        context.results.hasResult = block_hash is not None
        context.results.result = block_hash or ""

    @_served
    async def getBlock_context(self, context: Any) -> None:
        block = await self._impl.get_block(int(context.params.height))
        context.results.hasResult = block is not None
        if block is not None:
            _convert.fill_block(context.results.init("result"), block)

    @_served
    async def handleNotifications_context(self, context: Any) -> None:
        notifications = _clients.CapnpChainNotificationsClient(
            context.params.notifications, self._link)
        handler = await self._impl.handle_notifications(notifications)
        context.results.result = export_handler(handler, self._link)

    @_served
    async def handleRpc_context(self, context: Any) -> None:
        methods = [str(name) for name in context.params.methods]
        handler = _clients.CapnpRpcHandlerClient(context.params.handler, self._link)
        registration = await self._impl.handle_rpc(methods, handler)
        context.results.result = export_handler(registration, self._link)


class WalletServer(_ServerBase[Wallet], _WalletBase):  # type: ignore[misc]
    """Serves one ``Wallet``."""

    _interface = "Wallet"

    @_served
    async def getName_context(self, context: Any) -> None:
        context.results.result = await self._impl.get_name()

    @_served
    async def getNewAddress_context(self, context: Any) -> None:
        context.results.result = await self._impl.get_new_address(str(context.params.label))

    @_served
    async def getBalance_context(self, context: Any) -> None:
        context.results.result = await self._impl.get_balance()

    @_served
    async def getLastBlock_context(self, context: Any) -> None:
        ref = await self._impl.get_last_block()
        context.results.hasResult = ref is not None
        if ref is not None:
            _convert.fill_block_ref(context.results.init("result"), ref)


class WalletLoaderServer(_ServerBase[WalletLoader],
                         _WalletLoaderBase):  # type: ignore[misc]
    """Serves the ``WalletLoader``."""

    _interface = "WalletLoader"

    @_served
    async def createWallet_context(self, context: Any) -> None:
        wallet = await self._impl.create_wallet(str(context.params.name))
        context.results.result = _export(wallet, WalletServer, self._link)

    @_served
    async def getWallet_context(self, context: Any) -> None:
        wallet = await self._impl.get_wallet(str(context.params.name))
        context.results.hasResult = wallet is not None
        if wallet is not None:
            context.results.result = _export(wallet, WalletServer, self._link)

    @_served
    async def listWallets_context(self, context: Any) -> None:
        context.results.result = list(await self._impl.list_wallets())


class IndexServer(_ServerBase[Index], _IndexBase):  # type: ignore[misc]
    """Serves an ``Index``."""

    _interface = "Index"

    @_served
    async def getInfo_context(self, context: Any) -> None:
        _convert.fill_index_info(context.results.init("result"), await self._impl.get_info())

    @_served
    async def getTransaction_context(self, context: Any) -> None:
        tx = await self._impl.get_transaction(str(context.params.txid))
        context.results.hasResult = tx is not None
        if tx is not None:
            _convert.fill_indexed_transaction(context.results.init("result"), tx)


class InitServer(_ServerBase[Init], _InitBase):  # type: ignore[misc]
    """Serves a component's ``Init`` as the bootstrap capability."""

    _interface = "Init"

    def __init__(self, impl: Init, link: Link) -> None:
        super().__init__(impl, link)
        self._thread_map = ThreadMapServer(None, link)

    @_served
    async def construct_context(self, context: Any) -> None:
        # The client's ThreadMap is not needed: Python callbacks need no named thread.
        context.results.threadMap = self._thread_map

    @_served
    async def makeEcho_context(self, context: Any) -> None:
        context.results.result = _export(await self._impl.make_echo(), EchoServer, self._link)

    @_served
    async def makeChain_context(self, context: Any) -> None:
        context.results.result = export_chain(await self._impl.make_chain(), self._link)

    @_served
    async def makeWalletLoader_context(self, context: Any) -> None:
        chain = _clients.CapnpChainClient(context.params.chain, self._link)
        loader = await self._impl.make_wallet_loader(chain)
        context.results.result = _export(loader, WalletLoaderServer, self._link)

    @_served
    async def makeIndex_context(self, context: Any) -> None:
        chain = _clients.CapnpChainClient(context.params.chain, self._link)
        index = await self._impl.make_index(chain)
        context.results.result = _export(index, IndexServer, self._link)


def _export(obj: T, server: Callable[[T, Link], Any], link: Link) -> Any:
    """Return what goes into a capability field for ``obj``.

    A client proxy hands through its raw capability (native forwarding, no Python in the
    later path); a local implementation is wrapped in its server.
    """
    if isinstance(obj, _clients.CapnpClient):
        return obj.raw
    return server(obj, link)


def export_chain(chain: Chain, link: Link) -> Any:
    """Capability for ``chain`` (forwarded if it is a proxy, served if it is local)."""
    return _export(chain, ChainServer, link)


def export_notifications(notifications: ChainNotifications, link: Link) -> Any:
    """Capability for ``notifications`` (forwarded if a proxy, served if local)."""
    return _export(notifications, ChainNotificationsServer, link)


def export_rpc_handler(handler: RpcHandler, link: Link) -> Any:
    """Capability for ``handler`` (forwarded if a proxy, served if local)."""
    return _export(handler, RpcHandlerServer, link)


def export_handler(handler: Handler, link: Link) -> Any:
    """Capability for ``handler`` (forwarded if a proxy, served if local)."""
    return _export(handler, HandlerServer, link)
