"""The node role's lifecycle: open the datadir, load the chain, serve RPC, provide Init."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import (
    Chain,
    ChainGrant,
    ComponentSettings,
    ConsumerHealth,
    Echo,
    Init,
    Mining,
)
from bitcoin_supervisor.ipc import listen_unix

from .._echo import EchoImpl
from ._chain import NodeChain
from ._mining import NodeMining
from ._rpc_methods import NodeRpcMethods
from ._rpc_server import RpcServer

DEFAULT_RPC_PORT = 18443
DEFAULT_RPC_BIND = "127.0.0.1"
IPC_SOCKET = "node.sock"  # in the datadir, with ipcbind = "unix"
IPCBIND_CHOICES = ("none", "unix")


class NodeInit(Init):
    """The node's bootstrap capability: Echo, Mining (Bitcoin Core's) and the Chain."""

    def __init__(self, chain: NodeChain) -> None:
        self._chain = chain

    async def make_echo(self) -> Echo:
        """Return a new Echo."""
        return EchoImpl()

    async def make_mining(self) -> Mining:
        """Return Bitcoin Core's Mining over this node's chain."""
        return NodeMining(self._chain)

    async def make_chain(self, grant: ChainGrant) -> Chain:
        """Return a Chain minted for ``grant.consumer`` (see ``NodeChain.mint``)."""
        return self._chain.mint(grant)

    async def consumer_health(self) -> tuple[ConsumerHealth, ...]:
        """See ``Init.consumer_health``."""
        return self._chain.consumer_health()


class NodeProcess:
    """What the role entry point drives: ``start`` -> serve Init -> ``stop``."""

    def __init__(self) -> None:
        self.stop_requested = asyncio.Event()
        self.listeners: list[socket.socket] = []
        self._chain: NodeChain | None = None
        self._server: RpcServer | None = None

    @property
    def chain(self) -> NodeChain:
        """The loaded chain; RuntimeError before ``start``."""
        if self._chain is None:
            raise RuntimeError("NodeProcess.start() has not run")
        return self._chain

    @property
    def rpc_port(self) -> int:
        """The port the JSON-RPC server is bound to; RuntimeError before ``start``."""
        if self._server is None:
            raise RuntimeError("NodeProcess.start() has not run")
        return self._server.port

    async def start(self, settings: ComponentSettings) -> Init:
        """Open ``settings.datadir``, load and check the chain, start JSON-RPC; return Init.

        Options: ``rpcport`` (int, default 18443, 0 picks a free port), ``rpcbind``
        (default 127.0.0.1) and ``ipcbind`` ("none", default, or "unix": also listen on
        ``<datadir>/node.sock``, mode 0600, serving the same Init to any local client,
        as ``bitcoin-node -ipcbind=unix`` does; a stale socket there is replaced).
        Raises ValueError for bad options, BlockStoreError (a SupervisorError) for an
        unusable block file, OSError for I/O or bind failures; whatever was opened is
        closed again.
        """
        port = settings.options.get("rpcport", DEFAULT_RPC_PORT)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"rpcport must be an integer 0-65535, not {port!r}")
        host = str(settings.options.get("rpcbind", DEFAULT_RPC_BIND))
        ipcbind = settings.options.get("ipcbind", "none")
        if ipcbind not in IPCBIND_CHOICES:
            raise ValueError(f"ipcbind must be one of {IPCBIND_CHOICES}, not {ipcbind!r}")
        datadir = Path(settings.datadir)
        datadir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self._chain = await loop.run_in_executor(None, NodeChain.open, datadir / "blocks")
        self._server = RpcServer(datadir, host, port, on_stop=self._stop_rpc_called)
        try:
            methods = NodeRpcMethods(self._chain, self._server.request_stop)
            self._chain.reserve(methods.names())
            await self._server.start(methods.call)
            if ipcbind == "unix":
                self.listeners.append(listen_unix(datadir / IPC_SOCKET))
        except BaseException:
            await self._server.close()
            self._chain.close()
            raise
        return NodeInit(self._chain)

    def _stop_rpc_called(self) -> None:
        log.get_logger(subsystem="rpc").info("node.stop_requested")
        self.stop_requested.set()

    async def stop(self) -> None:
        """Close the RPC server, remove the cookie, flush and close the block file.

        Idempotent; never raises for an already-stopped node.
        """
        for listener in self.listeners:
            listener.close()
        self.listeners.clear()
        server, self._server = self._server, None
        if server is not None:
            await server.close()
        chain, self._chain = self._chain, None
        if chain is not None:
            await chain.aclose()
