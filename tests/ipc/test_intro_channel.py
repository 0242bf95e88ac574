"""Introduction channels in one process: sockets arrive under their numbers, malformed
frames are dropped, unclaimed sockets are bounded, a gone peer is a typed error."""

from __future__ import annotations

import asyncio
import socket

import pytest

from bitcoin_supervisor.interfaces import IpcError, PeerGoneError
from bitcoin_supervisor.ipc import IntroInbox, IntroSender, make_intro_pair


def _run(scenario: object) -> None:
    async def main() -> None:
        supervisor_end, component_end = make_intro_pair()
        inbox = IntroInbox(component_end)
        inbox.start()
        try:
            await scenario(IntroSender(supervisor_end), inbox)  # type: ignore[operator]
        finally:
            inbox.close()
            supervisor_end.close()
    asyncio.run(main())


def test_a_socket_arrives_under_its_number_and_still_talks() -> None:
    async def scenario(sender: IntroSender, inbox: IntroInbox) -> None:
        left, right = socket.socketpair()
        first = sender.send(left)
        second = sender.send(right)
        left.close()
        right.close()
        assert (first, second) == (1, 2)
        b = await inbox.take(second)  # in any order
        a = await inbox.take(first)
        a.sendall(b"hello")
        assert b.recv(5) == b"hello"
        a.close()
        b.close()
    _run(scenario)


def test_a_number_that_never_arrives_is_an_ipc_error() -> None:
    async def scenario(sender: IntroSender, inbox: IntroInbox) -> None:
        with pytest.raises(IpcError, match="no socket arrived as introduction channel 7"):
            await inbox.take(7, timeout=0.2)
    _run(scenario)


def test_malformed_frames_are_dropped_and_unclaimed_sockets_bounded() -> None:
    async def scenario(sender: IntroSender, inbox: IntroInbox) -> None:
        raw = sender._sock  # the supervisor's end, written as a confused peer would
        raw.send(b"no descriptor")
        pair = socket.socketpair()
        socket.send_fds(raw, [b"short"], [pair[0].fileno()])
        for _ in range(40):
            sender.send(pair[0])
        last = sender.send(pair[1])
        got = await inbox.take(last)
        got.close()
        assert len(inbox._ready) <= 16  # older unclaimed ones were closed
        for end in pair:
            end.close()
    _run(scenario)


def test_a_component_that_is_gone_is_peer_gone() -> None:
    supervisor_end, component_end = make_intro_pair()
    component_end.close()
    with socket.socket() as spare, pytest.raises(PeerGoneError):
        IntroSender(supervisor_end).send(spare)
    supervisor_end.close()
