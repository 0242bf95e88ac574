"""How the supervisor reaches a component and tells it is alive: the ``argv``, ``ipc``,
``socket``, ``schema`` and ``health`` keys of a component table, checked together."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from ._configcheck import TomlChecker, choices, table_name, type_name
from ._configschema import ForeignSchema, check_foreign

__all__ = ["CXX_SCHEMAS", "HEALTH_CHECKS", "IPC_KEYS", "IPC_MODES", "ForeignSchema",
           "HealthCheck", "HealthConfig", "IpcMode", "LinkConfig", "SCHEMAS", "Schema",
           "STANDBY_ROLES", "check_link", "check_standby"]

# Spelled out here, not imported: loading a config (the CLI's `rpc` path too) must not
# import the ipc package and asyncio with it. tests/unit/test_config_link.py checks that
# they equal ipc's.
FD_PLACEHOLDER = "{fd}"
DATADIR_PLACEHOLDER = "{datadir}"
Schema = Literal["bitcoin-supervisor", "bitcoin-core", "mp-example"]
SCHEMAS: tuple[Schema, ...] = ("bitcoin-supervisor", "bitcoin-core", "mp-example")
# Schemas served by C++ libmultiprocess programs (Bitcoin Core, libmultiprocess's
# examples): a component naming one is a C++ peer, whose capabilities the supervisor
# cannot forward to another C++ peer (_configgraph.check_forwarding).
CXX_SCHEMAS: tuple[Schema, ...] = ("bitcoin-core", "mp-example")
IpcMode = Literal["spawn", "bind"]
HealthCheck = Literal["echo", "construct", "none"]
IPC_MODES: tuple[IpcMode, ...] = ("spawn", "bind")
HEALTH_CHECKS: tuple[HealthCheck, ...] = ("echo", "construct", "none")
IPC_KEYS = ("argv", "ipc", "socket", "schema", "health", "start_timeout_s", "introduce")
_HEALTH_KEYS = ("check", "interval_s", "timeout_s")
# Roles that can wait as a warm standby: consumers, whose state is their own datadir.
# Not the node: it provides the chain, listens on its RPC port and owns the block
# files, so a second node could neither bind nor open them, and it has no provider to
# be introduced to in advance.
STANDBY_ROLES = ("wallet", "index")
_PLACEHOLDER_RE = re.compile(r"\{[a-z_:]+\}")
_KNOWN_PLACEHOLDERS = (FD_PLACEHOLDER, DATADIR_PLACEHOLDER)


@dataclass(frozen=True)
class HealthConfig:
    """A liveness check run every ``interval_s`` while the component runs; no answer
    within ``timeout_s`` is a hang (the component is killed and the restart policy
    applies). ``check`` "none": no check."""

    check: HealthCheck = "none"
    interval_s: float = 10.0
    timeout_s: float = 5.0


@dataclass(frozen=True)
class LinkConfig:
    """The validated link keys. ``argv`` has ``{datadir}`` expanded and keeps ``{fd}``
    (spawn mode); ``socket`` is the absolute path a bind-mode program listens on,
    inside its datadir. ``start_timeout_s`` bounds the wait for that socket, and then
    again for Init."""

    argv: tuple[str, ...]
    ipc: IpcMode = "spawn"
    socket: Path | None = None
    schema: Schema | ForeignSchema = "bitcoin-supervisor"
    health: HealthConfig = HealthConfig()
    start_timeout_s: float = 30.0
    # Our roles take direct links from the broker over an introduction channel;
    # ``introduce = false`` keeps one on the brokered (forwarded) path.
    introduce: bool = False


def check_link(checker: TomlChecker, table: Mapping[str, Any], path: tuple[str, ...],
               role: str | None, datadir: Path, base: Path) -> LinkConfig:
    """Check the link keys of the component at ``path``; raises a located ConfigError.
    A ``schema`` table's directory is relative to ``base`` (the config's directory)."""
    where = table_name(path)
    ipc = cast(IpcMode, checker.choice(table.get("ipc", "spawn"), path + ("ipc",),
                                       "ipc mode", IPC_MODES))
    schema: Schema | ForeignSchema
    if isinstance(table.get("schema"), dict) and role is None:
        schema = check_foreign(checker, table["schema"], path + ("schema",), base)
    else:
        schema = cast(Schema, checker.choice(table.get("schema", "bitcoin-supervisor"),
                                             path + ("schema",), "schema", SCHEMAS))
    if role is not None and schema != "bitcoin-supervisor":
        raise checker.error(path + ("schema",), f"{where} runs role {role!r}, which serves "
                            "our own Init", "drop 'schema' (only a program that is none of "
                            "our roles serves another Init)", value=True)
    if role is not None and ipc == "bind":
        raise checker.error(path + ("ipc",), f"role {role!r} in {where} inherits its "
                            "socket: it cannot run in bind mode", 'drop ipc = "bind"',
                            value=True)
    argv = _argv(checker, table, path, role, ipc, datadir)
    socket = _socket(checker, table, path, ipc, datadir)
    health = _health(checker, table.get("health", "none"), path + ("health",), schema)
    start_timeout = checker.number(table, path, "start_timeout_s", 30.0, 0.01)
    introduce = bool(checker.typed(table.get("introduce", role is not None),
                                   path + ("introduce",), "boolean"))
    if introduce and role is None:
        raise checker.error(path + ("introduce",), f"{where} runs no role of ours: it "
                            "cannot take an introduced link", "drop 'introduce' (its "
                            "capabilities are forwarded)", value=True)
    return LinkConfig(argv=argv, ipc=ipc, socket=socket, schema=schema, health=health,
                      start_timeout_s=start_timeout, introduce=introduce)


def _argv(checker: TomlChecker, table: Mapping[str, Any], path: tuple[str, ...],
          role: str | None, ipc: IpcMode, datadir: Path) -> tuple[str, ...]:
    where = table_name(path)
    if "argv" not in table:
        assert role is not None  # a component without a role must give argv
        return (f"bitcoin-supervisor-{role}", "-ipcfd", FD_PLACEHOLDER)
    argv = checker.strings(table["argv"], path + ("argv",))
    if not argv or not argv[0]:
        raise checker.error(path + ("argv",), f"'argv' in {where} must start with an "
                            "executable", value=True)
    for i, arg in enumerate(argv):
        for unknown in set(_PLACEHOLDER_RE.findall(arg)) - set(_KNOWN_PLACEHOLDERS):
            raise checker.error(path + ("argv", str(i)), f"unknown placeholder {unknown} "
                                f"in 'argv' of {where}",
                                f"known: {', '.join(_KNOWN_PLACEHOLDERS)}")
    has_fd = any(FD_PLACEHOLDER in arg for arg in argv)
    if ipc == "bind" and has_fd:
        raise checker.error(path + ("argv",), f"'argv' in {where} names '{{fd}}', but a "
                            "bind-mode program inherits no socket",
                            "drop {fd}; the program listens on 'socket' instead", value=True)
    # At least once in spawn mode: a wrapper such as `sandbox run --keep-fd {fd} -- prog
    # {fd}` names the same inherited descriptor twice.
    if ipc == "spawn" and not has_fd:
        raise checker.error(path + ("argv",), f"'argv' in {where} must contain "
                            "'{fd}' (the inherited IPC socket's number)",
                            'e.g. argv = ["mpcalculator", "{fd}"], or ipc = "bind" with '
                            "'socket' for a program that listens itself", value=True)
    return tuple(arg.replace(DATADIR_PLACEHOLDER, str(datadir)) for arg in argv)


def _socket(checker: TomlChecker, table: Mapping[str, Any], path: tuple[str, ...],
            ipc: IpcMode, datadir: Path) -> Path | None:
    where = table_name(path)
    if ipc == "spawn":
        if "socket" in table:
            raise checker.error(path + ("socket",), f"'socket' in {where} needs "
                                'ipc = "bind"', "a spawned component's link is inherited")
        return None
    if "socket" not in table:
        raise checker.error(path, f"{where} has ipc = \"bind\" but no 'socket'",
                            'e.g. socket = "{datadir}/regtest/node.sock"')
    text = cast(str, checker.typed(table["socket"], path + ("socket",), "string"))
    expanded = text.replace(DATADIR_PLACEHOLDER, str(datadir))
    socket = Path(os.path.normpath(datadir / expanded))  # relative: to the datadir
    if socket == datadir or not socket.is_relative_to(datadir):
        raise checker.error(path + ("socket",), f"socket {socket} of {where} is not inside "
                            f"its datadir {datadir}", "the socket must live in the "
                            "component's own datadir (its sandbox view)", value=True)
    if len(str(socket).encode()) > 107:
        # Connected through /proc/self/fd/N, so only the program's own bind() hits the
        # 108-byte sun_path limit; say so now rather than as a failed start.
        raise checker.error(path + ("socket",), f"socket path of {where} is longer than "
                            "107 bytes: the program cannot bind it", "use a shorter "
                            "datadir", value=True)
    return socket


def _health(checker: TomlChecker, value: object, path: tuple[str, ...],
            schema: Schema | ForeignSchema) -> HealthConfig:
    where = table_name(path[:-1])
    if isinstance(value, str):
        table: dict[str, Any] = {"check": value}
        check_path = path
    elif isinstance(value, dict):
        checker.keys(value, path, _HEALTH_KEYS)
        table, check_path = value, path + ("check",)
    else:
        raise checker.error(path, f"'health' in {where} must be a check name or a table, "
                            f"not {type_name(value)}", f"e.g. health = \"echo\"; checks: "
                            f"{choices(HEALTH_CHECKS)}", value=True)
    check = cast(HealthCheck, checker.choice(table.get("check", "echo"), check_path,
                                             "health check", HEALTH_CHECKS))
    if check == "echo" and schema == "mp-example":
        raise checker.error(check_path, f"the Init of {where} (schema \"mp-example\") has "
                            "no Echo", 'use health = "construct"', value=True)
    if isinstance(schema, ForeignSchema) and (check == "echo" and not schema.echo or
                                              check == "construct" and not schema.construct):
        method = "a makeEcho returning an interface with echo" if check == "echo" \
            else "construct"
        raise checker.error(check_path, f"the Init {schema.init!r} of {where} has no "
                            f"{method}", 'use health = "none"', value=True)
    interval = checker.number(table, path, "interval_s", 10.0, 0.01)
    timeout = checker.number(table, path, "timeout_s", 5.0, 0.01)
    return HealthConfig(check=check, interval_s=interval, timeout_s=timeout)


def check_standby(checker: TomlChecker, table: Mapping[str, Any], path: tuple[str, ...],
                  role: str | None, ipc: IpcMode, default: bool) -> bool:
    """The component's ``standby`` (``default``: [supervisor] standby, which applies only
    where a standby can work); raises a located ConfigError when the component's own key
    asks for one that cannot."""
    if "standby" not in table:
        return default and role in STANDBY_ROLES and ipc == "spawn"
    wanted = bool(checker.typed(table["standby"], path + ("standby",), "boolean"))
    if wanted and role not in STANDBY_ROLES:
        what = f"role {role!r}" if role else "a program that is none of our roles"
        raise checker.error(path + ("standby",), f"{table_name(path)} runs {what}, which "
                            "cannot wait as a standby", "drop 'standby' (only "
                            f"{choices(list(STANDBY_ROLES))} can)", value=True)
    return wanted
