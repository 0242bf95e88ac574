"""Cap'n Proto two-party RPC behind the protocol-free ``Protocol``/``Connection`` faces."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import capnp

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import Chain, Echo, Handler, Init, IpcError, RemoteError
from bitcoin_supervisor.ipc._protocol import Connection, ForeignInit, Probe, Protocol, Schema

from . import _clients, _direct, _servers
from ._link import Link
from ._loopgc import LoopCollector
from ._schema import load_foreign, load_schemas

T = TypeVar("T")
_logger = log.get_logger()
# The largest message the supervisor reads from a component's link: four times the
# default max_message_bytes of a consumer's answer, above any block a node sends.
LINK_MAX_MESSAGE_BYTES = 16 << 20
# The method-table row (and schema file attribute) of each kind of peer's Init.
_INITS: dict[Schema, tuple[str, str]] = {
    "bitcoin-supervisor": ("init", "Init"),
    "bitcoin-core": ("core", "CoreInit"),
    "mp-example": ("core", "MpExampleInit"),
}


class CapnpConnection(Connection):
    """A bootstrapped, constructed link to one peer's Init."""

    def __init__(self, stream: Any, rpc: Any, init: Init,
                 disconnected: asyncio.Future[Any], peer: str) -> None:
        self._stream = stream
        self._rpc = rpc  # keeps the RpcSystem alive as long as the connection
        self._init = init
        self._disconnected = disconnected
        self._peer = peer
        self._closed = False
        self._echo: Echo | None = None  # made by the first echo probe, kept for the next

    @property
    def init(self) -> Init:
        """The peer's Init proxy; every call on it and on what it returns carries the
        peer's ``Proxy.Thread`` in ``Context.thread``."""
        return self._init

    async def wait_disconnected(self) -> None:
        """Return once the link is gone (about 2 ms after the peer dies). Never raises;
        cancelling the wait leaves the link alone."""
        # shield: a caller cancelling its wait must not cancel the shared future.
        try:
            await asyncio.shield(self._disconnected)
        except capnp.KjException:
            return

    async def probe(self, kind: Probe) -> None:
        """One liveness check (see ``Connection.probe``); raises IpcError."""
        if kind == "construct":
            await _clients.reconstruct(cast(_clients.CapnpClient, self._init))
            return
        if self._echo is None:
            self._echo = await self._init.make_echo()
        token = os.urandom(8).hex()
        answer = await self._echo.echo(token)
        if answer != token:
            raise RemoteError(f"{self._peer}: Echo answered {answer[:40]!r}, not the token")

    def close(self) -> None:
        """Close our end. Idempotent, does not block: the socket goes on the next loop turn,
        then pending calls fail with PeerGoneError and ``wait_disconnected`` returns."""
        if self._closed:
            return
        self._closed = True
        # Closing the transport fails pending calls with DISCONNECTED and resolves
        # on_disconnect; tearing down the RpcSystem instead would leave capabilities
        # pointing at freed memory.
        self._stream.close()
        _logger.info("ipc.closed", component=self._peer)


def _watch(awaitable: Any) -> asyncio.Future[Any]:
    """Wrap pycapnp's ``on_disconnect()`` in a future whose failure is never unretrieved."""
    future: asyncio.Future[Any] = asyncio.ensure_future(awaitable)
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


class CapnpProtocol(Protocol):
    """Cap'n Proto two-party RPC with libmultiprocess conventions (construct, Context)."""

    def __init__(self) -> None:
        self._schemas = load_schemas()

    def run(self, main: Callable[[], Awaitable[T]]) -> T:
        """Run ``main()`` under ``asyncio.run`` with the KJ loop; blocks; once per process.

        Meanwhile cyclic garbage is collected on the loop's thread only (``_loopgc``):
        other threads may run, but never free a capnp object.
        """

        async def body() -> T:
            collector = LoopCollector(asyncio.get_running_loop())
            collector.install()
            try:
                return await main()
            finally:
                collector.uninstall()

        result: T = asyncio.run(capnp.run(body()))
        return result

    async def connect(self, sock: socket.socket, *, peer: str, debug: bool = False,
                      schema: Schema | ForeignInit = "bitcoin-supervisor") -> Connection:
        """Bootstrap and construct the peer's Init over ``sock`` (now owned by the link).

        One round trip: ``construct`` with ``makeThread`` pipelined on its result (a
        user's Init without ``construct``: none, the Init is used as bootstrapped). Waits
        for the peer's answer (callers add their own timeout). Raises PeerGoneError if the
        link breaks first, RemoteError if the peer's ``construct`` fails.
        """
        stream = await capnp.AsyncIoStream.create_connection(sock=sock)
        # A component's message larger than this breaks its own link (KJ refuses it
        # before building anything), not the supervisor's memory.
        rpc = capnp.TwoPartyClient(
            stream, traversal_limit_in_words=_direct.traversal_words(LINK_MAX_MESSAGE_BYTES))
        disconnected = _watch(rpc.on_disconnect())
        link = Link(component=peer, debug=debug)
        if isinstance(schema, ForeignInit):
            # The user's file was loaded once already by the config check's own process,
            # so this load cannot abort the supervisor. Our Init rows (CoreInit: construct
            # and makeEcho; MpExampleInit: construct) call methods by name only.
            interface = "CoreInit"
            raw_init = rpc.bootstrap().cast_as(
                load_foreign(schema.path, schema.file, schema.init))
        else:
            attr, interface = _INITS[schema]
            raw_init = rpc.bootstrap().cast_as(getattr(getattr(self._schemas, attr),
                                                       interface))
        try:
            if isinstance(schema, ForeignInit) and not schema.construct:
                init: Any = _clients.proxy(interface, raw_init, link)
            else:
                init = await _clients.construct_init(raw_init, link, interface)
        except IpcError:
            stream.close()
            raise
        _logger.info("ipc.connected", component=peer)
        return CapnpConnection(stream, rpc, cast(Init, init), disconnected, peer)

    async def serve(self, sock: socket.socket, init: Init, *, name: str,
                    debug: bool = False) -> None:
        """Serve ``init`` as the bootstrap capability on ``sock`` until the peer goes.

        Returns (never raises for a lost peer) once the link is gone; cancelling it closes
        the link. Exceptions from ``init`` reach the peer as one line, and are logged here.
        """
        stream = await capnp.AsyncIoStream.create_connection(sock=sock)
        server = capnp.TwoPartyServer(
            stream, bootstrap=_servers.export(init, "Init", Link(component=name, debug=debug)))
        _logger.info("ipc.serving", component=name)
        try:
            await server.on_disconnect()
        except capnp.KjException as exc:
            _logger.info("ipc.disconnected", component=name, error=str(exc.type))
        else:
            _logger.info("ipc.disconnected", component=name)
        finally:
            stream.close()

    async def serve_chain(self, sock: socket.socket, chain: Chain, *, name: str,
                          peer: str, max_message_bytes: int,
                          debug: bool = False) -> Handler:
        """See ``Protocol.serve_chain``."""
        return await _direct.serve_chain(sock, chain, name=name, peer=peer,
                                         max_message_bytes=max_message_bytes, debug=debug)

    async def connect_chain(self, sock: socket.socket, *, peer: str,
                            debug: bool = False) -> Chain:
        """See ``Protocol.connect_chain``."""
        return await _direct.connect_chain(sock, peer=peer, debug=debug)


def make_capnp_protocol() -> Protocol:
    """Return the Cap'n Proto protocol; loads the schemas now (before any sandbox).

    Raises nothing: a broken schema aborts the process inside the C++ parser.
    """
    return CapnpProtocol()
