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
from collections.abc import Callable, Iterable, Mapping

from bitcoin_supervisor.interfaces import ConsumerHealth, IpcError
from bitcoin_supervisor.log import get_logger

from ._broker import Broker
from ._capabilities import CapabilityGraph
from ._component import Component
from ._state import ComponentState

__all__ = ["CHECK_INTERVAL_S", "HEALTH_TIMEOUT_S", "MAX_CHECK_INTERVAL_S", "check_interval",
           "consumer_health", "watch_laggards"]

log = get_logger()

# How often the providers are asked: a quarter of the shortest lagging_restart_ms among
# the consumers (so a laggard is restarted within 1.25 times its limit), between these.
# Each check is an IPC round trip per consumer: at 1 s the idle daemon woke ~5 times a
# second for nothing; with the default 60 s limit it now asks every 15 s.
CHECK_INTERVAL_S = 1.0
MAX_CHECK_INTERVAL_S = 15.0
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
    """Restart each running consumer whose providers report it lagging for longer than
    its grant's ``lagging_restart_ms`` (logged ``consumer.lagging_restarted``), checked
    every quarter of the shortest such limit (CHECK_INTERVAL_S to
    MAX_CHECK_INTERVAL_S). Runs until cancelled; never raises otherwise."""
    restarted: dict[str, int | None] = {}  # consumer -> the pid already restarted
    while True:
        consumers = {name: graph().grant(name).limits.lagging_restart_ms / 1000
                     for name, c in components().items()
                     if c.config.role is not None and graph().needs(name)}
        await asyncio.sleep(check_interval(consumers.values()))
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


def check_interval(limits_s: Iterable[float]) -> float:
    """Seconds between two checks for consumers with these lagging limits (seconds)."""
    shortest = min(limits_s, default=MAX_CHECK_INTERVAL_S * 4)
    return min(max(shortest / 4, CHECK_INTERVAL_S), MAX_CHECK_INTERVAL_S)
