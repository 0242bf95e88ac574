"""The daemon: config, component state machine, restart policy, broker, control server, CLI.

Names are imported on first use (PEP 562): the CLI's client verbs import this package on
their way to ``cli`` and must not pay for the daemon (asyncio, capnp, the sandbox).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._broker import Broker
    from ._capabilities import CAPABILITIES, Binding, Capability, CapabilityGraph
    from ._component import Component, ExitInfo
    from ._config import ComponentConfig, Config, RestartConfig, load_config
    from ._control import ControlServer, DaemonNotRunning, request, request_sync
    from ._daemon import Daemon
    from ._restart import Decision, RestartTracker
    from ._state import ComponentState, ExitReason, PublicState, StateMachine, public_state

_SOURCES = {
    "Broker": "_broker",
    "CAPABILITIES": "_capabilities",
    "Binding": "_capabilities",
    "Capability": "_capabilities",
    "CapabilityGraph": "_capabilities",
    "Component": "_component",
    "ExitInfo": "_component",
    "ComponentConfig": "_config",
    "Config": "_config",
    "RestartConfig": "_config",
    "load_config": "_config",
    "ControlServer": "_control",
    "DaemonNotRunning": "_client",
    "request": "_control",
    "request_sync": "_client",
    "Daemon": "_daemon",
    "Decision": "_restart",
    "RestartTracker": "_restart",
    "ComponentState": "_state",
    "ExitReason": "_state",
    "PublicState": "_state",
    "StateMachine": "_state",
    "public_state": "_state",
}

__all__ = [
    "CAPABILITIES",
    "Binding",
    "Broker",
    "Capability",
    "CapabilityGraph",
    "Component",
    "ComponentConfig",
    "ComponentState",
    "Config",
    "ControlServer",
    "Daemon",
    "DaemonNotRunning",
    "Decision",
    "ExitInfo",
    "ExitReason",
    "PublicState",
    "RestartConfig",
    "RestartTracker",
    "StateMachine",
    "load_config",
    "public_state",
    "request",
    "request_sync",
]


def __getattr__(name: str) -> Any:
    """Import ``name`` from its module on first use; AttributeError for unknown names."""
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{source}", __name__), name)
    globals()[name] = value
    return value
