"""Direct links: a Chain served on, or bootstrapped from, a socket the supervisor introduced.

Each side runs its own two-party RPC system on its end of the socketpair, so calls go
from consumer to provider without crossing the supervisor. The serving side reads with
a traversal limit derived from the consumer's ``max_message_bytes``: a larger message
from that consumer breaks its link alone (KJ refuses it before building anything), the
provider goes on serving everyone else.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, cast

import capnp

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import Chain, Handler

from . import _clients, _servers
from ._link import Link
from ._schema import load_schemas

_logger = log.get_logger()
_WORD = 8
# Live direct links (RPC system, stream): pycapnp frees an RPC system whose Python object
# is collected, so each link is held here until its peer goes or it is revoked.
_LIVE: set[_DirectLink] = set()


def traversal_words(max_message_bytes: int) -> int:
    """The reader's traversal limit for messages of at most ``max_message_bytes``, plus
    room for the RPC envelope (call header, capability table)."""
    return max(1, max_message_bytes // _WORD) + 1024


class _DirectLink:
    def __init__(self, stream: Any, rpc: Any, name: str, peer: str) -> None:
        self._stream = stream
        self._rpc = rpc
        self._name = name
        self._peer = peer
        self._closed = False
        _LIVE.add(self)
        self._watch = asyncio.ensure_future(self._wait(rpc.on_disconnect()))

    async def _wait(self, disconnected: Any) -> None:
        try:
            await disconnected
        except capnp.KjException as exc:
            _logger.info("ipc.direct_disconnected", component=self._name, peer=self._peer,
                         error=str(exc.type))
        else:
            _logger.info("ipc.direct_disconnected", component=self._name, peer=self._peer)
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Closing the transport (not the RPC system) fails pending calls cleanly.
        self._stream.close()
        _LIVE.discard(self)


class _Revoke(Handler):
    def __init__(self, link: _DirectLink) -> None:
        self._link = link

    async def disconnect(self) -> None:
        """Close the direct link (revocation). Idempotent."""
        _logger.info("ipc.direct_revoked", component=self._link._name, peer=self._link._peer)
        self._link.close()


async def serve_chain(sock: socket.socket, chain: Chain, *, name: str, peer: str,
                      max_message_bytes: int, debug: bool = False) -> Handler:
    """See ``Protocol.serve_chain``."""
    stream = await capnp.AsyncIoStream.create_connection(sock=sock)
    server = capnp.TwoPartyServer(
        stream, bootstrap=_servers.export(chain, "Chain", Link(component=name, debug=debug)),
        traversal_limit_in_words=traversal_words(max_message_bytes))
    link = _DirectLink(stream, server, name, peer)
    _logger.info("ipc.direct_serving", component=name, peer=peer)
    return _Revoke(link)


async def connect_chain(sock: socket.socket, *, peer: str, debug: bool = False) -> Chain:
    """See ``Protocol.connect_chain``."""
    stream = await capnp.AsyncIoStream.create_connection(sock=sock)
    client = capnp.TwoPartyClient(stream)
    _DirectLink(stream, client, "direct", peer)
    raw = client.bootstrap().cast_as(load_schemas().chain.Chain)
    _logger.info("ipc.direct_connected", peer=peer)
    return cast(Chain, _clients.proxy("Chain", raw, Link(component=peer, debug=debug)))
