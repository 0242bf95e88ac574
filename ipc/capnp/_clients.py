"""Client proxies: capnp capabilities seen as the ``interfaces`` types (Bitcoin Core's
ProxyClient). No capnp object escapes from here except through ``CapnpClient.raw``."""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

import capnp

from bitcoin_supervisor.interfaces import (
    Block,
    BlockRef,
    Chain,
    ChainNotifications,
    Echo,
    Handler,
    Index,
    IndexedTransaction,
    IndexInfo,
    Init,
    RpcHandler,
    RpcRequest,
    RpcResponse,
    Wallet,
    WalletLoader,
)

from . import _convert, _errors, _servers
from ._link import Link


class CapnpClient:
    """Base of every client proxy: one capnp capability plus the link it lives on.

    Passing a proxy into a call on any link hands over ``raw``, so pycapnp forwards the
    capability natively and no Python code sits in the later call path.
    """

    _interface: ClassVar[str] = ""

    def __init__(self, raw: Any, link: Link) -> None:
        self._raw = raw
        self._link = link

    @property
    def raw(self) -> Any:
        """The underlying pycapnp capability client (for ``ipc/capnp`` code only)."""
        return self._raw

    def _request(self, method: str) -> Any:
        request = getattr(self._raw, method + "_request")()
        if self._link.thread is not None:
            request.context.thread = self._link.thread
        return request

    async def _send(self, method: str, request: Any) -> Any:
        """Send ``request`` and return the response; KJ errors become IpcError subclasses."""
        return await self._await(method, request.send())

    async def _await(self, method: str, promise: Any) -> Any:
        """Await the response to a sent request, translating and logging as ``_send``."""
        started = time.perf_counter()
        try:
            response = await promise
        except capnp.KjException as exc:
            error = _errors.translate(exc, self._link.component)
            self._link.log_call(self._interface, method, "client", started, error=str(error))
            raise error from None
        self._link.log_call(self._interface, method, "client", started)
        return response


class CapnpEchoClient(CapnpClient, Echo):
    """``Echo`` in another process."""

    _interface = "Echo"

    async def echo(self, message: str) -> str:
        request = self._request("echo")
        request.echo = message
        return str((await self._send("echo", request)).result)


class CapnpHandlerClient(CapnpClient, Handler):
    """A registration held by another process."""

    _interface = "Handler"

    async def disconnect(self) -> None:
        await self._send("disconnect", self._request("disconnect"))


class CapnpChainNotificationsClient(CapnpClient, ChainNotifications):
    """``ChainNotifications`` registered by another process."""

    _interface = "ChainNotifications"

    async def block_connected(self, block: Block) -> None:
        request = self._request("blockConnected")
        _convert.fill_block(request.init("block"), block)
        await self._send("blockConnected", request)

    async def block_disconnected(self, block: Block) -> None:
        request = self._request("blockDisconnected")
        _convert.fill_block(request.init("block"), block)
        await self._send("blockDisconnected", request)


class CapnpRpcHandlerClient(CapnpClient, RpcHandler):
    """An RPC executor registered by another process."""

    _interface = "RpcHandler"

    async def execute(self, request: RpcRequest) -> RpcResponse:
        call = self._request("execute")
        _convert.fill_rpc_request(call.init("request"), request)
        return _convert.read_rpc_response((await self._send("execute", call)).result)


class CapnpChainClient(CapnpClient, Chain):
    """The node's ``Chain``, possibly forwarded through the supervisor."""

    _interface = "Chain"

    async def get_tip(self) -> BlockRef:
        response = await self._send("getTip", self._request("getTip"))
        return _convert.read_block_ref(response.result)

    async def get_block_hash(self, height: int) -> str | None:
        request = self._request("getBlockHash")
        request.height = height
        response = await self._send("getBlockHash", request)
        return str(response.result) if response.hasResult else None

    async def get_block(self, height: int) -> Block | None:
        request = self._request("getBlock")
        request.height = height
        response = await self._send("getBlock", request)
        return _convert.read_block(response.result) if response.hasResult else None

    async def handle_notifications(self, notifications: ChainNotifications) -> Handler:
        request = self._request("handleNotifications")
        request.notifications = _servers.export_notifications(notifications, self._link)
        response = await self._send("handleNotifications", request)
        return CapnpHandlerClient(response.result, self._link)

    async def handle_rpc(self, methods: list[str], handler: RpcHandler) -> Handler:
        request = self._request("handleRpc")
        request.methods = list(methods)
        request.handler = _servers.export_rpc_handler(handler, self._link)
        response = await self._send("handleRpc", request)
        return CapnpHandlerClient(response.result, self._link)


class CapnpWalletClient(CapnpClient, Wallet):
    """One wallet in the wallet process."""

    _interface = "Wallet"

    async def get_name(self) -> str:
        return str((await self._send("getName", self._request("getName"))).result)

    async def get_new_address(self, label: str = "") -> str:
        request = self._request("getNewAddress")
        request.label = label
        return str((await self._send("getNewAddress", request)).result)

    async def get_balance(self) -> int:
        return int((await self._send("getBalance", self._request("getBalance"))).result)

    async def get_last_block(self) -> BlockRef | None:
        response = await self._send("getLastBlock", self._request("getLastBlock"))
        return _convert.read_block_ref(response.result) if response.hasResult else None


class CapnpWalletLoaderClient(CapnpClient, WalletLoader):
    """The wallet process's ``WalletLoader``."""

    _interface = "WalletLoader"

    async def create_wallet(self, name: str) -> Wallet:
        request = self._request("createWallet")
        request.name = name
        response = await self._send("createWallet", request)
        return CapnpWalletClient(response.result, self._link)

    async def get_wallet(self, name: str) -> Wallet | None:
        request = self._request("getWallet")
        request.name = name
        response = await self._send("getWallet", request)
        return CapnpWalletClient(response.result, self._link) if response.hasResult else None

    async def list_wallets(self) -> list[str]:
        response = await self._send("listWallets", self._request("listWallets"))
        return [str(name) for name in response.result]


class CapnpIndexClient(CapnpClient, Index):
    """The index process's ``Index``."""

    _interface = "Index"

    async def get_info(self) -> IndexInfo:
        response = await self._send("getInfo", self._request("getInfo"))
        return _convert.read_index_info(response.result)

    async def get_transaction(self, txid: str) -> IndexedTransaction | None:
        request = self._request("getTransaction")
        request.txid = txid
        response = await self._send("getTransaction", request)
        return (_convert.read_indexed_transaction(response.result)
                if response.hasResult else None)


class CapnpInitClient(CapnpClient, Init):
    """A peer's bootstrap ``Init``, already constructed (see ``construct``)."""

    _interface = "Init"

    async def make_echo(self) -> Echo:
        response = await self._send("makeEcho", self._request("makeEcho"))
        return CapnpEchoClient(response.result, self._link)

    async def make_chain(self) -> Chain:
        response = await self._send("makeChain", self._request("makeChain"))
        return CapnpChainClient(response.result, self._link)

    async def make_wallet_loader(self, chain: Chain) -> WalletLoader:
        request = self._request("makeWalletLoader")
        request.chain = _servers.export_chain(chain, self._link)
        response = await self._send("makeWalletLoader", request)
        return CapnpWalletLoaderClient(response.result, self._link)

    async def make_index(self, chain: Chain) -> Index:
        request = self._request("makeIndex")
        request.chain = _servers.export_chain(chain, self._link)
        response = await self._send("makeIndex", request)
        return CapnpIndexClient(response.result, self._link)


async def construct_init(raw_init: Any, link: Link) -> CapnpInitClient:
    """Run libmultiprocess's handshake on a bootstrapped Init and return its proxy.

    Sends ``construct`` with a null ThreadMap (this side runs no thread pool a C++ peer
    could call back into) and pipelines ``makeThread`` on the peer's ThreadMap, so the
    thread every later call names in ``Context.thread`` costs no extra round trip.
    Raises PeerGoneError/RemoteError if ``construct`` fails.
    """
    promise = raw_init.construct_request().send()
    make_thread = promise.threadMap.makeThread_request()
    make_thread.name = f"ipc-client-{os.getpid()}"
    thread = make_thread.send().result
    await CapnpInitClient(raw_init, link)._await("construct", promise)
    return CapnpInitClient(raw_init, Link(component=link.component, debug=link.debug,
                                          thread=thread))
