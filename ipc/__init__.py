"""Protocol-agnostic IPC: launching component processes and the Protocol/Connection faces."""

from ._bind import BindLauncher
from ._launch import (
    DATADIR_PLACEHOLDER,
    FD_PLACEHOLDER,
    ChildHandle,
    Endpoint,
    Launcher,
    LaunchRequest,
    SocketpairLauncher,
    expand_argv,
    resolve_executable,
    spawn_process,
)
from ._protocol import PROBES, SCHEMAS, Connection, Probe, Protocol, Schema

__all__ = [
    "DATADIR_PLACEHOLDER",
    "FD_PLACEHOLDER",
    "BindLauncher",
    "ChildHandle",
    "Connection",
    "Endpoint",
    "LaunchRequest",
    "PROBES",
    "Probe",
    "SCHEMAS",
    "Schema",
    "Launcher",
    "Protocol",
    "SocketpairLauncher",
    "expand_argv",
    "make_protocol",
    "resolve_executable",
    "spawn_process",
]


def make_protocol() -> Protocol:
    """Return the protocol the project speaks (Cap'n Proto two-party RPC).

    Imported lazily so that code which only spawns or parses config never loads capnp.
    """
    from .capnp import make_capnp_protocol

    return make_capnp_protocol()
