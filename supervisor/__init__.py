"""The daemon: config, component state machine, restart policy, broker, control server, CLI."""

from ._broker import Broker
from ._capabilities import CAPABILITIES, Binding, Capability, CapabilityGraph
from ._component import Component, ExitInfo
from ._config import ComponentConfig, Config, RestartConfig, load_config
from ._control import ControlServer, DaemonNotRunning, request, request_sync
from ._daemon import Daemon
from ._restart import Decision, RestartTracker
from ._state import ComponentState, ExitReason, PublicState, StateMachine, public_state

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
