"""Consumers that stay behind on their notifications: seen in status, restarted past a deadline.

The provider marks a consumer lagging when a delivery misses the consumer's deadline and
stops waiting for it (``roles/node/_receivers.py``); that keeps mining going, but a
consumer that never catches up (frozen, wedged) would hold a stale view for ever. The
supervisor asks each provider how its consumers keep up (``Init.consumer_health``) and
restarts a consumer that has been lagging longer than its ``lagging_restart_ms`` limit,
the way a failed health check restarts a hung component.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from bitcoin_supervisor.interfaces import ConsumerHealth, IpcError
from bitcoin_supervisor.log import get_logger

from ._broker import Broker
from ._capabilities import CapabilityGraph
from ._component import Component
from ._state import ComponentState

__all__ = ["CHECK_INTERVAL_S", "HEALTH_TIMEOUT_S", "consumer_health", "watch_laggards"]

log = get_logger()

CHECK_INTERVAL_S = 1.0
HEALTH_TIMEOUT_S = 2.0


async def consumer_health(broker: Broker, c: Component) -> dict[str, ConsumerHealth]:
    """What ``c``'s providers report about it, by capability; empty when it is not
    running or a provider does not answer within HEALTH_TIMEOUT_S. Never raises."""
    if c.state is not ComponentState.RUNNING:
        return {}
    try:
        return await asyncio.wait_for(broker.health(c.name), HEALTH_TIMEOUT_S)
    except (IpcError, TimeoutError):
        return {}


async def watch_laggards(components: Callable[[], Mapping[str, Component]], broker: Broker,
                         graph: Callable[[], CapabilityGraph],
                         restart: Callable[[str], None]) -> None:
    """Every CHECK_INTERVAL_S, restart each running consumer whose providers report it
    lagging for longer than its grant's ``lagging_restart_ms`` (logged
    ``consumer.lagging_restarted``). Runs until cancelled; never raises otherwise."""
    restarted: dict[str, int | None] = {}  # consumer -> the pid already restarted
    while True:
        await asyncio.sleep(CHECK_INTERVAL_S)
        for name, c in list(components().items()):
            if c.config.role is None or not graph().needs(name):
                continue
            limit_s = graph().grant(name).limits.lagging_restart_ms / 1000
            for capability, health in (await consumer_health(broker, c)).items():
                if not health.lagging or health.lagging_s < limit_s:
                    continue
                if restarted.get(name) == c.pid:
                    break  # asked already; the restart is under way
                restarted[name] = c.pid
                log.error("consumer.lagging_restarted", component=name,
                          capability=capability, lagging_s=round(health.lagging_s, 1),
                          limit_s=limit_s)
                restart(name)
                break
