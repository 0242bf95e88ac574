"""Protocol-agnostic IPC: launching component processes and the Protocol/Connection faces."""

from ._bind import BindLauncher
from ._intro import INTRO_FD_ENV, IntroInbox, IntroSender, make_intro_pair
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
from ._listen import MAX_CONNECTIONS, listen_unix, serve_listener
from ._protocol import PROBES, SCHEMAS, Connection, ForeignInit, Probe, Protocol, Schema

__all__ = [
    "DATADIR_PLACEHOLDER",
    "FD_PLACEHOLDER",
    "MAX_CONNECTIONS",
    "INTRO_FD_ENV",
    "BindLauncher",
    "ChildHandle",
    "Connection",
    "Endpoint",
    "ForeignInit",
    "IntroInbox",
    "IntroSender",
    "LaunchRequest",
    "PROBES",
    "Probe",
    "SCHEMAS",
    "Schema",
    "Launcher",
    "Protocol",
    "SocketpairLauncher",
    "expand_argv",
    "listen_unix",
    "make_intro_pair",
    "make_protocol",
    "resolve_executable",
    "serve_listener",
    "spawn_process",
]


def make_protocol() -> Protocol:
    """Return the protocol the project speaks (Cap'n Proto two-party RPC).

    Imported lazily so that code which only spawns or parses config never loads capnp.
    """
    from .capnp import make_capnp_protocol

    return make_capnp_protocol()
