"""Protocol-agnostic IPC: launching component processes and the Protocol/Connection faces."""

from ._launch import (
    FD_PLACEHOLDER,
    ChildHandle,
    Endpoint,
    Launcher,
    LaunchRequest,
    SocketpairLauncher,
    expand_argv,
    resolve_executable,
)
from ._protocol import Connection, Protocol

__all__ = [
    "FD_PLACEHOLDER",
    "ChildHandle",
    "Connection",
    "Endpoint",
    "LaunchRequest",
    "Launcher",
    "Protocol",
    "SocketpairLauncher",
    "expand_argv",
    "make_protocol",
    "resolve_executable",
]


def make_protocol() -> Protocol:
    """Return the protocol the project speaks (Cap'n Proto two-party RPC).

    Imported lazily so that code which only spawns or parses config never loads capnp.
    """
    from .capnp import make_capnp_protocol

    return make_capnp_protocol()
