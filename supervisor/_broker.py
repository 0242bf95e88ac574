"""Brokering: which capability each role provides, and who receives it.

The node's ``Chain`` goes to the wallet (``Init.make_wallet_loader``) and the index
(``Init.make_index``). When the node comes back after a restart, every attached consumer
gets the fresh ``Chain`` through the same call, without being restarted itself.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bitcoin_supervisor.interfaces import Chain, Init, IpcError
from bitcoin_supervisor.log import get_logger

log = get_logger()


@dataclass
class _Consumer:
    name: str
    role: str
    init: Init


class Broker:
    """Hands capabilities between components; one instance per daemon."""

    def __init__(self) -> None:
        self._chain: Chain | None = None
        self._chain_ready = asyncio.Event()
        self._consumers: dict[str, _Consumer] = {}

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
                await self._rebroker(chain)
            case "wallet" | "index":
                await self._chain_ready.wait()
                assert self._chain is not None
                await self._give_chain(role, init, self._chain)
                self._consumers[name] = _Consumer(name, role, init)
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

    async def _rebroker(self, chain: Chain) -> None:
        consumers = list(self._consumers.values())
        results = await asyncio.gather(
            *(self._give_chain(c.role, c.init, chain) for c in consumers), return_exceptions=True
        )
        for consumer, result in zip(consumers, results, strict=True):
            if isinstance(result, IpcError):
                # The consumer's own runner notices its dead link and restarts it; the
                # fresh instance gets the chain through attach().
                log.warning("broker.rebroker_failed", component=consumer.name, error=str(result))
            elif isinstance(result, BaseException):
                raise result
            else:
                log.info("broker.chain_given", component=consumer.name, rebrokered=True)
