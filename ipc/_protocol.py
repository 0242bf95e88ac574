"""The protocol-agnostic face of IPC: connect to a child's Init, serve an Init, run a loop."""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from bitcoin_supervisor.interfaces import Chain, Handler, Init

T = TypeVar("T")

Schema = Literal["bitcoin-supervisor", "bitcoin-core", "mp-example"]
SCHEMAS: tuple[Schema, ...] = ("bitcoin-supervisor", "bitcoin-core", "mp-example")
"""Which Init a peer serves: ours; Bitcoin Core v30's (``construct``, ``makeEcho`` under
Core's wire ids); libmultiprocess's example programs' (``construct`` only)."""



@dataclass(frozen=True)
class ForeignInit:
    """A peer serving a user's own Init: interface ``init`` of ``file`` in directory
    ``path``, already proven loadable by a separate process (the config check).
    ``construct``: it has libmultiprocess's handshake, run on connect."""

    path: Path
    file: str
    init: str
    construct: bool


Probe = Literal["echo", "construct"]
PROBES: tuple[Probe, ...] = ("echo", "construct")


class Connection(ABC):
    """One live link to a peer process, from the side that called ``connect``."""

    @property
    @abstractmethod
    def init(self) -> Init:
        """The peer's bootstrap ``Init`` (already constructed: ready for ``make_*``)."""

    @abstractmethod
    async def wait_disconnected(self) -> None:
        """Return once the link is gone (peer died or closed). Never raises."""

    @abstractmethod
    async def probe(self, kind: Probe) -> None:
        """Prove the peer still answers: ``echo`` sends a fresh token through an Echo
        (made once per connection) and checks it comes back; ``construct`` repeats the
        Init handshake call. Returns when it answered; raises IpcError (PeerGoneError,
        RemoteError, or a wrong answer) otherwise. Callers add their own deadline."""

    @abstractmethod
    def close(self) -> None:
        """Drop the link from this side. Idempotent; pending calls fail with PeerGoneError."""


class Protocol(ABC):
    """An RPC protocol (today: Cap'n Proto two-party RPC) behind protocol-free types."""

    @abstractmethod
    def run(self, main: Callable[[], Awaitable[T]]) -> T:
        """Run ``main()`` to completion inside the event loop this protocol needs and
        return its result. Blocks the calling thread; call once per process."""

    @abstractmethod
    async def connect(self, sock: socket.socket, *, peer: str, debug: bool = False,
                      schema: Schema | ForeignInit = "bitcoin-supervisor") -> Connection:
        """Bootstrap the peer's Init over ``sock`` (ownership passes to the connection).

        ``peer`` names the component in logs; ``debug`` logs every call as ``ipc.call``;
        ``schema`` says whose Init the peer serves (``SCHEMAS``, or a user's).
        Raises PeerGoneError if the peer is gone before Init is constructed.
        """

    @abstractmethod
    async def serve(self, sock: socket.socket, init: Init, *, name: str,
                    debug: bool = False) -> None:
        """Serve ``init`` as the bootstrap capability on ``sock``; return when the peer
        disconnects. ``name`` is this component's name in logs."""

    @abstractmethod
    async def serve_chain(self, sock: socket.socket, chain: Chain, *, name: str,
                          peer: str, max_message_bytes: int,
                          debug: bool = False) -> Handler:
        """Serve ``chain`` as the bootstrap capability on ``sock`` (ownership passes) in
        the background; messages from ``peer`` larger than ``max_message_bytes`` break
        that link alone. Returns at once a Handler whose ``disconnect`` closes the link
        (revocation); the link also goes when the peer does. Raises OSError."""

    @abstractmethod
    async def connect_chain(self, sock: socket.socket, *, peer: str,
                            debug: bool = False) -> Chain:
        """Bootstrap the Chain served at the other end of ``sock`` (ownership passes).
        Returns at once; calls on it fail with PeerGoneError once ``peer`` closes the
        link. Raises OSError."""
