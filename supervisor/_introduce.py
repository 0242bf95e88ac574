"""Direct introduction: connect a consumer to its provider over a socketpair of their own.

The broker decides who may have what; this module then makes the capability it decided
on travel without the supervisor: a fresh socketpair, one end to each side over its
introduction channel (``ipc.IntroSender``), the provider serving the consumer's minted
capability on its end (``Capability.serve``), the consumer bootstrapping it from its own
(``Capability.connect``). The supervisor keeps the provider's Handler: disconnecting it
closes that consumer's link at the provider (revocation).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass
from typing import Any

from bitcoin_supervisor.interfaces import ChainGrant, Handler, Init, IpcError, NotProvidedError
from bitcoin_supervisor.ipc import IntroSender
from bitcoin_supervisor.log import get_logger

from ._capabilities import Capability

__all__ = ["FORWARDED", "INTRODUCED", "Introduction", "introduce", "revoke"]

log = get_logger()

INTRODUCED = "introduced"
FORWARDED = "forwarded"
REVOKE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Introduction:
    """A capability introduced directly: what the consumer returned for its end (to
    hand back to it) and the provider's Handler that revokes the link."""

    capability: Any
    revoke: Handler
    latency_ms: float


async def introduce(capability: Capability, grant: ChainGrant, provider: Init,
                    provider_channel: IntroSender, consumer: Init,
                    consumer_channel: IntroSender) -> Introduction | None:
    """Introduce ``grant.consumer`` to ``provider`` for ``capability``; None when it
    cannot be (a side that does not serve introductions, a full or broken channel:
    the caller forwards instead). Raises what the provider raises for the grant
    (RpcNameOwnedError...) and PeerGoneError when a side's link broke."""
    if capability.serve is None or capability.connect is None:
        return None
    started = time.perf_counter()
    try:
        ends = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError as exc:
        log.warning("broker.introduction_failed", component=grant.consumer,
                    capability=capability.name, error=exc.strerror)
        return None
    try:
        provider_end = provider_channel.send(ends[0])
        consumer_end = consumer_channel.send(ends[1])
    except IpcError as exc:
        log.warning("broker.introduction_failed", component=grant.consumer,
                    capability=capability.name, error=str(exc))
        return None
    finally:
        for end in ends:  # each side has its own duplicate now
            end.close()
    try:
        handler = await capability.serve(provider, grant, provider_end)
    except NotProvidedError as exc:
        log.warning("broker.introduction_failed", component=grant.consumer,
                    capability=capability.name, error=str(exc))
        return None
    try:
        taken = await capability.connect(consumer, consumer_end)
    except BaseException as exc:
        await revoke(handler, grant.consumer)
        if isinstance(exc, NotProvidedError):
            log.warning("broker.introduction_failed", component=grant.consumer,
                        capability=capability.name, error=str(exc))
            return None
        raise
    latency = round((time.perf_counter() - started) * 1000, 3)
    return Introduction(taken, handler, latency)


async def revoke(handler: Handler, consumer: str) -> None:
    """Close one introduced link at its provider; a provider that is gone or slow has
    closed it already or will with its own exit. Never raises but CancelledError."""
    with contextlib.suppress(IpcError, TimeoutError):
        await asyncio.wait_for(handler.disconnect(), REVOKE_TIMEOUT_S)
        log.info("broker.link_revoked", component=consumer)
