"""Small real implementations of the role interfaces and a KJ-loop runner for IPC tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from bitcoin_supervisor.interfaces import (
    Block,
    BlockRef,
    Chain,
    ChainGrant,
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
from bitcoin_supervisor.ipc import Connection, Protocol
from bitcoin_supervisor.ipc.capnp import make_capnp_protocol

T = TypeVar("T")
PROTOCOL: Protocol = make_capnp_protocol()
GENESIS = Block(height=0, hash="0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
                raw=bytes(range(256)) * 2)


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` inside asyncio + the KJ loop, as a component's main would."""
    return PROTOCOL.run(main)


@asynccontextmanager
async def served(init: Init, *, name: str = "peer", debug: bool = False,
                 client_debug: bool | None = None,
                 ) -> AsyncIterator[tuple[Connection, asyncio.Task[None]]]:
    """Serve ``init`` on one end of a fresh socketpair and connect to it from the other."""
    server_end, client_end = socket.socketpair()
    task = asyncio.create_task(PROTOCOL.serve(server_end, init, name=name, debug=debug))
    conn = await PROTOCOL.connect(client_end, peer=name,
                                  debug=debug if client_debug is None else client_debug)
    try:
        yield conn, task
    finally:
        conn.close()
        # serve() must return by itself once the link is gone (unless the test cancelled it).
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done, "serve() did not return after the link closed"
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


class EchoImpl(Echo):
    """Echoes; the message "block" parks the call until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.parked = asyncio.Event()

    async def echo(self, message: str) -> str:
        if message == "block":
            self.parked.set()
            await self.release.wait()
        if message == "boom":
            raise ValueError(f"cannot echo {message!r} at /secret/path/wallet.dat")
        return message


class Registration(Handler):
    """Removes itself from a list once; a second disconnect does nothing."""

    def __init__(self, entries: list[object], entry: object) -> None:
        self._entries = entries
        self._entry = entry

    async def disconnect(self) -> None:
        if self._entry in self._entries:
            self._entries.remove(self._entry)


@dataclass
class ChainImpl(Chain):
    """An in-memory active chain that notifies registered listeners as blocks connect."""

    blocks: list[Block] = field(default_factory=lambda: [GENESIS])
    listeners: list[object] = field(default_factory=list)
    rpc: dict[str, RpcHandler] = field(default_factory=dict)

    async def get_tip(self) -> BlockRef:
        tip = self.blocks[-1]
        return BlockRef(tip.height, tip.hash)

    async def get_block_hash(self, height: int) -> str | None:
        return self.blocks[height].hash if 0 <= height < len(self.blocks) else None

    async def get_block(self, height: int) -> Block | None:
        return self.blocks[height] if 0 <= height < len(self.blocks) else None

    async def handle_notifications(self, notifications: ChainNotifications) -> Handler:
        self.listeners.append(notifications)
        return Registration(self.listeners, notifications)

    async def handle_rpc(self, methods: list[str], handler: RpcHandler) -> Handler:
        for method in methods:
            self.rpc[method] = handler
        return _RpcRegistration(self.rpc, methods, handler)

    async def connect_block(self, raw: bytes) -> Block:
        """Append a block and call every listener, one at a time, as the node does."""
        block = Block(height=len(self.blocks), hash=f"{len(self.blocks):064x}", raw=raw)
        self.blocks.append(block)
        for listener in list(self.listeners):
            assert isinstance(listener, ChainNotifications)
            await listener.block_connected(block)
        return block

    async def dispatch(self, request: RpcRequest) -> RpcResponse:
        """Route one RPC call the way the node's HTTP endpoint would."""
        handler = self.rpc.get(request.method)
        if handler is None:
            return RpcResponse.fail(-32601, "Method not found")
        return await handler.execute(request)


class _RpcRegistration(Handler):
    def __init__(self, table: dict[str, RpcHandler], methods: list[str],
                 handler: RpcHandler) -> None:
        self._table = table
        self._methods = methods
        self._handler = handler

    async def disconnect(self) -> None:
        for method in self._methods:
            if self._table.get(method) is self._handler:
                del self._table[method]


class RpcImpl(RpcHandler):
    """Answers ``getbalance`` and fails everything else with a bitcoind error code."""

    def __init__(self) -> None:
        self.seen: list[RpcRequest] = []

    async def execute(self, request: RpcRequest) -> RpcResponse:
        self.seen.append(request)
        if request.method == "getbalance":
            return RpcResponse.ok(1.5)
        return RpcResponse.fail(-18, f"Requested wallet does not exist: {request.wallet}")


class Listener(ChainNotifications):
    """Records the blocks it is told about."""

    def __init__(self) -> None:
        self.connected: list[Block] = []
        self.disconnected: list[Block] = []
        self.changed = asyncio.Event()

    async def block_connected(self, block: Block) -> None:
        self.connected.append(block)
        self.changed.set()

    async def block_disconnected(self, block: Block) -> None:
        self.disconnected.append(block)
        self.changed.set()


class WalletImpl(Wallet):
    """A wallet whose last block is whatever the chain it was given says its tip is."""

    def __init__(self, name: str, chain: Chain) -> None:
        self.name = name
        self.chain = chain
        self.addresses: list[str] = []

    async def get_name(self) -> str:
        return self.name

    async def get_new_address(self, label: str = "") -> str:
        self.addresses.append(f"bcrt1q{len(self.addresses):038d}")
        return self.addresses[-1]

    async def get_balance(self) -> int:
        return 21 * 10**14  # more than 32 bits on purpose

    async def get_last_block(self) -> BlockRef | None:
        return await self.chain.get_tip()


class WalletLoaderImpl(WalletLoader):
    """Creates ``WalletImpl`` objects on the chain it was attached to."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.wallets: dict[str, WalletImpl] = {}

    async def create_wallet(self, name: str) -> Wallet:
        if name in self.wallets:
            raise ValueError(f"wallet {name!r} already exists")
        self.wallets[name] = WalletImpl(name, self.chain)
        return self.wallets[name]

    async def get_wallet(self, name: str) -> Wallet | None:
        return self.wallets.get(name)

    async def list_wallets(self) -> list[str]:
        return sorted(self.wallets)


class IndexImpl(Index):
    """Knows one transaction."""

    TX = IndexedTransaction(txid="ab" * 32, raw=b"\x02\x00\x00\x00" + b"\xff" * 60,
                            block_hash="cd" * 32, block_height=7)

    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    async def get_info(self) -> IndexInfo:
        tip = await self.chain.get_tip()
        return IndexInfo(name="txindex", synced=True, best_block_height=tip.height)

    async def get_transaction(self, txid: str) -> IndexedTransaction | None:
        return self.TX if txid == self.TX.txid else None


class NodeInit(Init):
    """The node role: provides Echo and Chain."""

    def __init__(self) -> None:
        self.chain = ChainImpl()
        self.echo = EchoImpl()

    async def make_echo(self) -> Echo:
        return self.echo

    async def make_chain(self, grant: ChainGrant) -> Chain:
        return self.chain


class WalletInit(Init):
    """The wallet role: follows the chain it is given and provides a WalletLoader."""

    def __init__(self) -> None:
        self.loader: WalletLoaderImpl | None = None
        self.listener = Listener()
        self.registration: Handler | None = None

    async def make_wallet_loader(self, chain: Chain) -> WalletLoader:
        self.loader = WalletLoaderImpl(chain)
        self.registration = await chain.handle_notifications(self.listener)
        return self.loader


class IndexInit(Init):
    """The index role: provides an Index over the chain it is given."""

    async def make_index(self, chain: Chain) -> Index:
        return IndexImpl(chain)


class RelayInit(Init):
    """A middle component that re-exports a Chain it obtained from another link."""

    def __init__(self, chain: Chain) -> None:
        self._chain = chain

    async def make_chain(self, grant: ChainGrant) -> Chain:
        return self._chain
