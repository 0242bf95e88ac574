"""Brokering: which capability each role provides, and who receives it.

The node's ``Chain`` goes to the wallet (``Init.make_wallet_loader``) and the index
(``Init.make_index``). When the node comes back after a restart, every attached consumer
gets the fresh ``Chain`` through the same call, without being restarted itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from bitcoin_supervisor.interfaces import Chain, Init, IpcError
from bitcoin_supervisor.log import get_logger

log = get_logger()

REBROKER_TIMEOUT_S = 30.0


@dataclass
class _Consumer:
    name: str
    role: str
    init: Init


class Broker:
    """Hands capabilities between components; one instance per daemon."""

    def __init__(self, on_stale: Callable[[str], None] | None = None) -> None:
        self._chain: Chain | None = None
        self._chain_ready = asyncio.Event()
        self._consumers: dict[str, _Consumer] = {}
        self._on_stale = on_stale
        self._rebrokering: set[asyncio.Task[None]] = set()

    async def attach(self, name: str, role: str, init: Init) -> None:
        """Wire a freshly bootstrapped component in.

        A node publishes its Chain (and re-brokers it to every attached consumer); a
        wallet or index waits for a Chain, then receives it. Raises IpcError if the
        component's own link fails meanwhile; cancellable while waiting for a Chain.
        """
        match role:
            case "node":
                chain = await init.make_chain()
                self._chain = chain
                self._chain_ready.set()
                # In the background: a stalled consumer must not hold the node's start.
                for consumer in list(self._consumers.values()):
                    task = asyncio.create_task(self._rebroker(consumer, chain))
                    self._rebrokering.add(task)
                    task.add_done_callback(self._rebrokering.discard)
            case "wallet" | "index":
                # Registered first: a node restart during the hand-over re-brokers to it.
                self._consumers[name] = _Consumer(name, role, init)
                while True:
                    await self._chain_ready.wait()
                    current = self._chain
                    assert current is not None
                    await self._give_chain(role, init, current)
                    if self._chain is current or self._chain is None:
                        break  # else the node restarted meanwhile: hand the new Chain
                log.info("broker.chain_given", component=name)
            case _:
                raise ValueError(f"unknown role {role!r}")

    def detach(self, name: str, role: str) -> None:
        """Forget a component that stopped; a node takes its Chain with it."""
        if role == "node":
            self._chain = None
            self._chain_ready.clear()
        self._consumers.pop(name, None)

    @staticmethod
    async def _give_chain(role: str, init: Init, chain: Chain) -> None:
        if role == "wallet":
            await init.make_wallet_loader(chain)
        else:
            await init.make_index(chain)

    async def _rebroker(self, consumer: _Consumer, chain: Chain) -> None:
        try:
            await asyncio.wait_for(self._give_chain(consumer.role, consumer.init, chain),
                                   timeout=REBROKER_TIMEOUT_S)
        except IpcError as exc:
            # The consumer's own runner notices its dead link and restarts it; the
            # fresh instance gets the chain through attach().
            log.warning("broker.rebroker_failed", component=consumer.name, error=str(exc))
            return
        except TimeoutError:
            log.error("broker.rebroker_failed", component=consumer.name,
                      error=f"no answer within {REBROKER_TIMEOUT_S:.0f} s")
            if self._on_stale is not None and self._consumers.get(consumer.name) is consumer:
                self._on_stale(consumer.name)
            return
        log.info("broker.chain_given", component=consumer.name, rebrokered=True)
