"""Protocol-agnostic IPC: spawning component processes and the Protocol/Connection faces."""

from ._protocol import Connection, Protocol
from ._spawn import ChildProcess, PopenSpawner, Spawner, expand_argv, resolve_executable

__all__ = [
    "ChildProcess",
    "Connection",
    "PopenSpawner",
    "Protocol",
    "Spawner",
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
