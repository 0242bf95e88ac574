"""Plain value types passed across interfaces (and therefore across IPC links)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class BlockRef:
    """A block by position: ``hash`` is the usual big-endian hex shown by bitcoind RPC."""

    height: int
    hash: str


@dataclass(frozen=True)
class Block:
    """A block on the active chain: position plus the serialized block (with witness)."""

    height: int
    hash: str
    raw: bytes


@dataclass(frozen=True)
class RpcRequest:
    """One JSON-RPC call forwarded by the node to the component that registered it.

    ``params_json`` is the JSON text of the request's ``params`` (array or object).
    ``wallet`` is the name from a ``/wallet/<name>`` URL path, or ``None``.
    """

    method: str
    params_json: str = "[]"
    wallet: str | None = None


@dataclass(frozen=True)
class RpcResponse:
    """Result of an RPC call: either ``result_json`` or an error (bitcoind codes)."""

    result_json: str = "null"
    error_code: int = 0
    error_message: str = ""

    @property
    def is_error(self) -> bool:
        """True when this response carries an error instead of a result."""
        return self.error_code != 0

    @staticmethod
    def ok(result: Any) -> RpcResponse:
        """Build a success response from any JSON-serialisable value."""
        return RpcResponse(result_json=json.dumps(result))

    @staticmethod
    def fail(code: int, message: str) -> RpcResponse:
        """Build an error response with a bitcoind error code (e.g. -18, -8)."""
        return RpcResponse(error_code=code, error_message=message)


@dataclass(frozen=True)
class IndexInfo:
    """Progress of an index: whether it has reached the chain tip, and its best height."""

    name: str
    synced: bool
    best_block_height: int


@dataclass(frozen=True)
class IndexedTransaction:
    """A transaction found by the index: serialized tx and the block that holds it."""

    txid: str
    raw: bytes
    block_hash: str
    block_height: int


COMPONENT_SETTINGS_ENV = "BITCOIN_SUPERVISOR_COMPONENT"


@dataclass(frozen=True)
class ComponentSettings:
    """What a spawned component needs before it serves; travels in one env variable.

    argv stays exactly ``<exe> -ipcfd N`` (Bitcoin Core's convention); capabilities then
    arrive over IPC. The sandbox step reads its policy from here too, because it must run
    before the child serves anything.
    """

    name: str
    role: str | None  # None: a program that is none of our roles
    datadir: str
    debug: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    # The sandbox policy to apply (a role name: policies/<sandbox>.toml); None: none.
    sandbox: str | None = None
    # Every configured component's datadir by component name, for {datadir:NAME}.
    datadirs: dict[str, str] = field(default_factory=dict)
    # Capability -> the component providing it to this one, for {datadir:provider:CAP}.
    providers: dict[str, str] = field(default_factory=dict)
    # Started as a warm standby: serve Init but open nothing of the datadir until
    # ``Init.activate`` (the supervisor promotes it when the running process dies).
    standby: bool = False

    def to_env(self) -> dict[str, str]:
        """Return the environment entry that carries these settings to a child."""
        data = asdict(self)
        data["debug"] = list(self.debug)
        return {COMPONENT_SETTINGS_ENV: json.dumps(data, sort_keys=True)}

    @staticmethod
    def from_env(environ: dict[str, str] | None = None) -> ComponentSettings:
        """Read settings written by ``to_env``; raises SupervisorError-free ValueError
        with a one-line message when the variable is missing or malformed."""
        env = os.environ if environ is None else environ
        text = env.get(COMPONENT_SETTINGS_ENV)
        if text is None:
            raise ValueError(f"{COMPONENT_SETTINGS_ENV} is not set: start components "
                             "through bitcoin-supervisor")
        try:
            data = json.loads(text)
            return ComponentSettings(
                name=str(data["name"]),
                role=None if data["role"] is None else str(data["role"]),
                datadir=str(data["datadir"]),
                debug=tuple(str(d) for d in data.get("debug", [])),
                options=dict(data.get("options", {})),
                sandbox=None if data.get("sandbox") is None else str(data["sandbox"]),
                datadirs={str(k): str(v) for k, v in data.get("datadirs", {}).items()},
                providers={str(k): str(v) for k, v in data.get("providers", {}).items()},
                standby=bool(data.get("standby", False)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{COMPONENT_SETTINGS_ENV} is malformed: {exc}") from exc


@dataclass(frozen=True)
class ChainLimits:
    """What one consumer may ask of the node's Chain, enforced by the node.

    ``max_rpc_names``: RPC names registered at once; ``max_name_length``: characters in
    one name; ``max_registrations``: live ``handle_rpc``/``handle_notifications``
    registrations; ``max_calls_in_flight``: calls of the consumer the node runs at once
    (more are refused, not queued); ``max_message_bytes``: size of one RPC response the
    consumer returns; ``notify_queue_depth``: blocks queued for the consumer before
    older ones are coalesced (it catches up through ``get_block``);
    ``notify_deadline_ms``: how long one ``block_connected`` call, and mining waiting
    for the consumer, may take before the consumer is marked lagging;
    ``lagging_restart_ms``: how long it may stay lagging before the supervisor restarts
    it (enforced by the supervisor, which asks the provider).
    """

    max_rpc_names: int = 64
    max_name_length: int = 64
    max_registrations: int = 8
    max_calls_in_flight: int = 64
    max_message_bytes: int = 4 << 20
    notify_queue_depth: int = 64
    notify_deadline_ms: int = 5000
    lagging_restart_ms: int = 60000


@dataclass(frozen=True)
class ConsumerHealth:
    """How one consumer keeps up with its provider's notifications: ``lagging`` (a
    delivery missed its deadline and it has not caught up) for ``lagging_s`` seconds."""

    consumer: str
    lagging: bool
    lagging_s: float = 0.0


@dataclass(frozen=True)
class ChainGrant:
    """The Chain minted for one consumer: who it is and what it may do.

    ``consumer`` is the component name the supervisor gave it (its identity at the
    node); ``rpc_methods`` the JSON-RPC names only it may register, reserved for it
    across its restarts.
    """

    consumer: str
    rpc_methods: tuple[str, ...] = ()
    limits: ChainLimits = field(default_factory=ChainLimits)
    # (name, owner): the RPC names the provider's other consumers are granted, so that
    # "owned by X" does not depend on whether X's Chain was minted yet.
    owned_elsewhere: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class DiskBudget:
    """The most a component may store in its datadir: ``bytes`` of data and ``inodes``
    files (the kernel enforces it: ENOSPC inside, nothing spills outside)."""

    bytes: int
    inodes: int
