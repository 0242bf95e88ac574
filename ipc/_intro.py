"""Introduction channels: how the supervisor hands a socket to a component (SCM_RIGHTS).

Direct introduction puts the supervisor out of the data path: it creates a socketpair
and gives one end to the provider and the other to the consumer, which then talk to each
other. Cap'n Proto could carry descriptors inside its own messages, but pycapnp exposes
neither a server's ``getFd`` nor ``maxFdsPerMessage``, so the ends travel over a second
inherited socket, the introduction channel: one ``SOCK_SEQPACKET`` pair per component,
created at launch. Each message is an 8-byte channel number plus exactly one descriptor;
the component then gets a capnp call naming that number (``Init.serve_chain`` /
``Init.connect_chain``) and takes the socket from its ``IntroInbox``. Hand-written on
``socket.send_fds``/``recv_fds`` (stdlib): no library does this small framing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import socket
import struct

from bitcoin_supervisor.interfaces import IpcError, PeerGoneError

__all__ = [
    "INTRO_FD_ENV",
    "IntroInbox",
    "IntroSender",
    "make_intro_pair",
]

INTRO_FD_ENV = "BITCOIN_SUPERVISOR_INTRO_FD"
_FRAME = struct.Struct(">Q")
# Sockets received but not yet claimed by a call: the supervisor sends one per call it is
# about to make, so more than a few waiting means calls that failed; the oldest go.
_MAX_UNCLAIMED = 16
TAKE_TIMEOUT_S = 10.0


def make_intro_pair() -> tuple[socket.socket, socket.socket]:
    """Return (supervisor end, component end) of a fresh introduction channel; both
    close-on-exec (the launcher passes the component's end explicitly). Raises OSError."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class IntroSender:
    """The supervisor's end of one component's introduction channel."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._numbers = itertools.count(1)

    def send(self, end: socket.socket) -> int:
        """Pass ``end`` (a duplicate of it: the caller still closes its own) to the
        component and return the channel number it arrives under. Never blocks: raises
        PeerGoneError when the component is gone, IpcError when its channel is full."""
        number = next(self._numbers)
        try:
            socket.send_fds(self._sock, [_FRAME.pack(number)], [end.fileno()])
        except BlockingIOError as exc:
            raise IpcError("the component's introduction channel is full") from exc
        except OSError as exc:
            raise PeerGoneError(f"introduction channel closed: {exc.strerror}") from exc
        return number

    def close(self) -> None:
        """Close the supervisor's end. Idempotent."""
        self._sock.close()


class IntroInbox:
    """A component's end of its introduction channel: sockets by channel number.

    Reads on the running event loop (``start``); ``take`` waits for one number. Anything
    malformed (no descriptor, several, a short frame) is closed and dropped.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._ready: collections.OrderedDict[int, socket.socket] = collections.OrderedDict()
        self._waiters: dict[int, asyncio.Future[socket.socket]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @staticmethod
    def from_env() -> IntroInbox | None:
        """The inbox of the fd named by ``INTRO_FD_ENV``, None when it is not set (a
        component started without one, e.g. in bind mode). Raises ValueError when the
        variable is not a descriptor of a socket."""
        text = os.environ.get(INTRO_FD_ENV)
        if text is None:
            return None
        if not text.isdigit():
            raise ValueError(f"{INTRO_FD_ENV}={text[:20]!r} is not a descriptor number")
        try:
            return IntroInbox(socket.socket(fileno=int(text)))
        except OSError as exc:
            raise ValueError(f"{INTRO_FD_ENV}={text}: {exc.strerror}") from exc

    def start(self) -> None:
        """Begin reading on the running loop. Call once, from the loop."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._readable)

    def close(self) -> None:
        """Stop reading and close every unclaimed socket. Idempotent."""
        if self._loop is not None and self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        for end in self._ready.values():
            end.close()
        self._ready.clear()

    async def take(self, number: int, timeout: float = TAKE_TIMEOUT_S) -> socket.socket:
        """Return the socket that arrived (or arrives within ``timeout``) as ``number``;
        ownership passes to the caller. Raises IpcError when none does."""
        found = self._ready.pop(number, None)
        if found is not None:
            return found
        if number in self._waiters:
            raise IpcError(f"introduction channel {number} is already awaited")
        future: asyncio.Future[socket.socket] = asyncio.get_running_loop().create_future()
        self._waiters[number] = future
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise IpcError(f"no socket arrived as introduction channel {number} "
                           f"within {timeout:g} s") from None
        finally:
            self._waiters.pop(number, None)

    def _readable(self) -> None:
        while True:
            try:
                data, fds, flags, _ = socket.recv_fds(self._sock, 64, 4)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            if not data and not fds:  # the supervisor is gone
                self.close()
                return
            ends = [socket.socket(fileno=fd) for fd in fds]
            if len(data) != _FRAME.size or len(ends) != 1 or flags & socket.MSG_CTRUNC:
                for end in ends:
                    end.close()
                continue
            self._arrived(_FRAME.unpack(data)[0], ends[0])

    def _arrived(self, number: int, end: socket.socket) -> None:
        waiter = self._waiters.get(number)
        if waiter is not None and not waiter.done():
            waiter.set_result(end)
            return
        old = self._ready.pop(number, None)
        if old is not None:
            old.close()
        self._ready[number] = end
        while len(self._ready) > _MAX_UNCLAIMED:
            with contextlib.suppress(OSError):
                self._ready.popitem(last=False)[1].close()
