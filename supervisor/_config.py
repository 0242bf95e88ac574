"""Load and fully validate the supervisor's TOML config into frozen dataclasses.

Every problem becomes a ``ConfigError`` pointing at ``file:line:col`` with a hint, so a
user never meets a traceback or a half-started daemon because of a typo. The file format
is documented in the bundled ``multiprocess.toml``.
"""

from __future__ import annotations

import grp
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast

from bitcoin_supervisor.interfaces import (
    ChainGrant,
    ChainLimits,
    ConfigError,
    DiskBudget,
    SupervisorError,
)

from ._capabilities import CAPABILITIES, ROLE_CONSUMES, ROLE_PROVIDES, Binding, CapabilityGraph
from ._configcheck import TomlChecker, choices, table_name
from ._configdisk import DISK_KEYS, check_disk
from ._configgrant import GRANT_KEYS, check_grant, check_rpc_owners
from ._configgraph import Node, Want, check_forwarding, close_match, order, resolve
from ._configipc import (
    CXX_SCHEMAS,
    IPC_KEYS,
    ForeignSchema,
    HealthConfig,
    IpcMode,
    LinkConfig,
    Schema,
    check_link,
    check_standby,
)
from ._configrestart import POLICIES, RestartConfig, check_restart

__all__ = [
    "FD_PLACEHOLDER",
    "IMAGES_DIR",
    "POLICIES",
    "ROLES",
    "ROLE_OPTIONS",
    "ComponentConfig",
    "Config",
    "HealthConfig",
    "RestartConfig",
    "load_config",
]

Role = Literal["node", "wallet", "index"]
ROLES: tuple[Role, ...] = ("node", "wallet", "index")
FD_PLACEHOLDER = "{fd}"
IMAGES_DIR = "images"
_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class ComponentConfig:
    """One supervised process. ``argv`` is a template: the element containing ``{fd}``
    gets the inherited socket's fd number (substitute with ``str.replace``); a bind-mode
    component (``ipc == "bind"``) has no ``{fd}`` and listens on ``socket``.

    ``role`` is None for a program that is none of ours (it then provides and consumes
    nothing). ``consumes`` maps each capability it receives to the component providing
    it; ``depends_on`` holds the explicit dependencies and then those providers.
    """

    name: str
    role: Role | None
    argv: tuple[str, ...]
    datadir: Path
    depends_on: tuple[str, ...]
    restart: RestartConfig
    stop_timeout_s: float
    options: Mapping[str, object]
    debug: tuple[str, ...]
    sandbox: str | None = None  # the policy applied (policies/<sandbox>.toml); None: none
    provides: tuple[str, ...] = ()
    consumes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    ipc: IpcMode = "spawn"  # "bind": the program listens on ``socket`` itself
    socket: Path | None = None
    schema: Schema | ForeignSchema = "bitcoin-supervisor"  # whose Init it serves
    health: HealthConfig = HealthConfig()
    start_timeout_s: float = 30.0
    introduce: bool = False  # it gets an introduction channel (direct links)
    # What its capabilities are minted with (used when it consumes any).
    rpc_methods: tuple[str, ...] = ()
    limits: ChainLimits = ChainLimits()
    # Start from the role's fork server (a pre-initialised template) instead of a fresh
    # interpreter; only our own role programs can, others always start cold.
    fork_server: bool = False
    # Keep a warm standby process (confined, verified, Init bootstrapped, its Chain
    # introduced, databases closed) to promote when the running one dies unexpectedly.
    standby: bool = False
    # The kernel-enforced bound on its datadir (a loop-mounted image); None: none.
    disk: DiskBudget | None = None


@dataclass(frozen=True)
class Config:
    """The whole validated config; ``components`` are in dependency order."""

    path: Path
    datadir: Path
    debug: tuple[str, ...]
    components: tuple[ComponentConfig, ...]
    # The gid whose members may use the control socket besides the daemon's user and
    # root ([supervisor] control_group); None: nobody else.
    control_group: int | None = None

    @property
    def socket_path(self) -> Path:
        """The daemon's control socket: ``<datadir>/supervisor.sock``."""
        return self.datadir / "supervisor.sock"

    @property
    def images_dir(self) -> Path:
        """Where the components' disk images live: ``<datadir>/images``."""
        return self.datadir / IMAGES_DIR

    def component(self, name: str) -> ComponentConfig:
        """Return the component called ``name``; raises KeyError if there is none."""
        for comp in self.components:
            if comp.name == name:
                return comp
        raise KeyError(name)

    @property
    def graph(self) -> CapabilityGraph:
        """Who provides which capability and who receives it from whom (the broker's
        input)."""
        return CapabilityGraph(
            roles=MappingProxyType({c.name: c.role for c in self.components}),
            provides=MappingProxyType({c.name: c.provides for c in self.components}),
            bindings=tuple(Binding(c.name, cap, provider) for c in self.components
                           for cap, provider in c.consumes.items()),
            grants=MappingProxyType({c.name: ChainGrant(c.name, c.rpc_methods, c.limits)
                                     for c in self.components if c.consumes}))


# Role settings a component may carry (passed to the role as ComponentSettings.options):
# key -> (kind, default or None); a kind "a|b" allows exactly those strings. Extend this
# table to give a role a new setting.
ROLE_OPTIONS: Mapping[Role | None, Mapping[str, tuple[str, object]]] = {
    "node": {"rpcport": ("port", 18443), "rpcbind": ("string", "127.0.0.1"),
             # "unix": the node also serves its Init on <datadir>/node.sock
             "ipcbind": ("none|unix", "none")},
    "wallet": {},
    "index": {},
    # A program that is none of our roles: the ports its policy may let it listen on
    # ({option:rpcport}, {option:port} in policies/bitcoin-node.toml); unset, it may
    # listen on none. They only widen the policy: the program reads its own arguments.
    None: {"rpcport": ("port", None), "port": ("port", None)},
}
_SUPERVISOR_KEYS = ("datadir", "debug", "control_group", "fork_server", "standby")
_COMPONENT_KEYS = ("role", "datadir", "depends_on", "provides", "consumes",
                   "restart", "stop_timeout_s", "debug", "sandbox",
                   "fork_server", "standby") + IPC_KEYS + GRANT_KEYS + DISK_KEYS
_SYSTEM_DIRS = frozenset(Path(p) for p in (
    "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root",
    "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib", "/var/tmp"))
# `sandbox = "none"` runs a component without its policy (debugging only; logged loudly);
# a program that is none of our roles names one of the shipped program policies.
SANDBOX_CHOICES = (*ROLES, "bitcoin-node", "mp-example", "none")
_ALL_OPTIONS = tuple(dict.fromkeys(k for opts in ROLE_OPTIONS.values() for k in opts))


def load_config(path: str | Path, *, datadir_override: str | None = None,
                resolve_program: Callable[[str], str] | None = None) -> Config:
    """Read, parse and validate the config at ``path``.

    Relative datadirs resolve against the config file's directory (``datadir_override``,
    from the command line, against the current directory). ``resolve_program``, when
    given (the daemon's start passes ipc's ``resolve_executable``), must find each
    component's ``argv[0]`` or raise SupervisorError, which becomes a located ConfigError;
    other readers of the config (status, rpc) leave it out and never touch the programs.
    Returns a ``Config``; raises ``ConfigError`` (never anything else) for a missing,
    unreadable or invalid file. Blocks on file I/O only.
    """
    shown = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError("config file not found", path=shown,
                          hint="pass --config PATH or copy the bundled multiprocess.toml"
                          ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", path=shown) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"config file is not UTF-8 (byte {raw[exc.start]:#04x})",
                          path=shown, line=line, col=col,
                          hint="save it as UTF-8") from exc
    data = _parse(text, shown)
    base = Path(path).resolve().parent
    validator = _Validator(text, shown, base, resolve_program)
    return validator.config(data, Path(path).resolve(), datadir_override)


def _parse(text: str, shown: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r" \(at line (\d+), column (\d+)\)$", message)
        if match:
            line, col = int(match.group(1)), int(match.group(2))
            message = message[:match.start()]
        else:
            line, col = text.count("\n") + 1, len(text) - text.rfind("\n")
            message = message.replace(" (at end of document)", " at end of file")
        hint = 'text values need quotes, e.g. role = "node"' if message == "Invalid value" \
            else None
        raise ConfigError(f"invalid TOML: {message}", path=shown, line=line, col=col,
                          hint=hint) from exc


class _Validator(TomlChecker):
    """Turns the parsed dict into dataclasses; every check raises a located ConfigError."""

    def __init__(self, text: str, shown: str, base: Path,
                 resolve_program: Callable[[str], str] | None) -> None:
        super().__init__(text, shown)
        self._base = base
        self._resolve_program = resolve_program
        self._nodes: list[Node] = []  # the graph's view of each component parsed so far
        # A C++ peer's provides/consumes refusals, raised only after the graph is bound:
        # when both ends of one of its bindings are C++ peers, that is the real reason.
        self._deferred: list[ConfigError] = []

    # -- sections ------------------------------------------------------------------------

    def config(self, data: dict[str, Any], path: Path, override: str | None) -> Config:
        self.keys(data, (), ("supervisor", "components"))
        sup = self.typed(data.get("supervisor", {}), ("supervisor",), "table")
        self.keys(sup, ("supervisor",), _SUPERVISOR_KEYS)
        datadir = self.directory(sup.get("datadir", ".bitcoin-supervisor"),
                                 ("supervisor", "datadir"), self._base)
        if override is not None:
            datadir = Path(override).expanduser().resolve()
        if datadir.parent == datadir or datadir in _SYSTEM_DIRS:
            # The daemon creates its socket, lock and uid record there and hands
            # subdirectories to role uids: never a directory the host itself owns.
            raise self.error(("supervisor", "datadir"), f"datadir {datadir} of [supervisor] "
                             "is a system directory", "use a directory of its own, e.g. "
                             '"/var/lib/bitcoin-supervisor"', value=True)
        debug = self.strings(sup.get("debug", []), ("supervisor", "debug"))
        comps = self.typed(data.get("components", {}), ("components",), "table")
        if not comps:
            raise self.error(("components",), "no components defined",
                             'add a table such as [components.node] with role = "node"')
        # On by default: a restarted role serves again in a few ms instead of ~300 ms.
        forks = self.typed(sup.get("fork_server", True), ("supervisor", "fork_server"),
                           "boolean")
        # Off by default: a standby costs a second process (its memory) per component.
        standby = self.typed(sup.get("standby", False), ("supervisor", "standby"), "boolean")
        parsed = [self.component(name, body, datadir, debug, forks, standby)
                  for name, body in comps.items()]
        self.check_unique(parsed)
        self.check_datadirs(parsed, datadir)
        components = self.graph(parsed)
        check_rpc_owners(self, components)
        return Config(path=path, datadir=datadir, debug=debug,
                      components=components, control_group=self.group(sup))

    def group(self, sup: Mapping[str, Any]) -> int | None:
        """``[supervisor] control_group``: a group name (or gid) of this host, as a gid."""
        if "control_group" not in sup:
            return None
        where = ("supervisor", "control_group")
        name = self.typed(sup["control_group"], where, "string")
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            raise self.error(where, f"unknown group {name!r} in [supervisor] control_group",
                             "create the group first (groupadd) or remove the key",
                             value=True) from None

    def component(self, name: str, body: object, datadir: Path,
                  debug: tuple[str, ...], forks: bool = True,
                  standby: bool = False) -> ComponentConfig:
        path = ("components", name)
        if not _NAME_RE.fullmatch(name):
            raise self.error(path, f"invalid component name {name!r}",
                             "use 1-32 characters: lowercase letters, digits, '-', '_', "
                             "starting with a letter")
        table = self.typed(body, path, "table")
        self.keys(table, path, _COMPONENT_KEYS + _ALL_OPTIONS)
        role = self.role(table, path)
        options = ROLE_OPTIONS[role]
        of_role = f"role {role!r}" if role else "a component without a role"
        for key in table:
            if key in _ALL_OPTIONS and key not in options:
                raise self.error(path + (key,), f"{key!r} in {table_name(path)} is not a "
                                 f"setting of {of_role}",
                                 f"settings of {of_role}: {choices(list(options)) or 'none'}")
        comp_dir = self.directory(table.get("datadir", name), path + ("datadir",), datadir)
        link: LinkConfig = check_link(self, table, path, role, comp_dir, self._base)
        rpc_methods, limits = check_grant(self, table, path, role)
        self.program(link.argv[0], path + ("argv", "0") if "argv" in table else path)
        depends = self.depends(table, path)
        # A foreign program may be C++ too: it is held to the C++ peers' rules.
        cxx = isinstance(link.schema, ForeignSchema) or link.schema in CXX_SCHEMAS
        self._nodes.append(Node(name, self.provides(table, path, role, cxx),
                                self.consumes(table, path, role, cxx), depends, cxx))
        restart = check_restart(self, table.get("restart", "on-failure"), path + ("restart",))
        stop_timeout = self.number(table, path, "stop_timeout_s", 10.0, 0.0)
        own_debug = self.strings(table.get("debug", []), path + ("debug",))
        merged_debug = tuple(dict.fromkeys(debug + own_debug))
        sandbox = self.choice(table.get("sandbox", role), path + ("sandbox",), "sandbox",
                              SANDBOX_CHOICES)
        return ComponentConfig(
            name=name, role=role, argv=link.argv, datadir=comp_dir, depends_on=depends,
            restart=restart, stop_timeout_s=stop_timeout,
            options=MappingProxyType(self.options(table, path, options)), debug=merged_debug,
            sandbox=None if sandbox == "none" else sandbox,
            provides=self._nodes[-1].provides, ipc=link.ipc, socket=link.socket,
            schema=link.schema, health=link.health, start_timeout_s=link.start_timeout_s,
            introduce=link.introduce, rpc_methods=rpc_methods, limits=limits,
            fork_server=self.typed(table.get("fork_server", forks), path + ("fork_server",),
                                   "boolean"),
            disk=check_disk(self, table, path, role),
            standby=check_standby(self, table, path, role, link.ipc, standby))

    def role(self, table: Mapping[str, Any], path: tuple[str, ...]) -> Role | None:
        if "role" not in table:
            if path[-1] in ROLES:
                return path[-1]
            if "argv" in table and "sandbox" in table:
                return None  # a program that is none of ours: it says how to run and confine it
            raise self.error(path, f"missing key 'role' in {table_name(path)}",
                             f"set role to one of {choices(ROLES)}, or give a program "
                             "of another kind both 'argv' and 'sandbox'")
        return cast(Role, self.choice(table["role"], path + ("role",), "role", ROLES))

    def program(self, name: str, where: tuple[str, ...]) -> None:
        """Refuse an ``argv[0]`` that cannot be executed (only when resolving programs)."""
        if self._resolve_program is None:
            return
        try:
            self._resolve_program(name)
        except SupervisorError as exc:
            raise self.error(where, str(exc), "install it, or name it by its absolute "
                             "path in 'argv'", value=True) from None

    def depends(self, table: Mapping[str, Any], path: tuple[str, ...]) -> tuple[str, ...]:
        names = self.strings(table.get("depends_on", []), path + ("depends_on",))
        for i, dep in enumerate(names):
            if dep in names[:i]:
                raise self.error(path + ("depends_on", str(i)),
                                 f"{table_name(path)} lists dependency {dep!r} twice")
        return names

    # -- the capability graph ------------------------------------------------------------

    def capability(self, text: str, path: tuple[str, ...], role: Role | None,
                   can: Sequence[str], verb: str, cxx: bool = False) -> str:
        """Check one capability name of ``provides``/``consumes`` against the table
        (a C++ peer's refusal for its kind waits until ``graph``)."""
        known = list(CAPABILITIES)
        if text not in CAPABILITIES:
            close = close_match(text, known)
            raise self.error(path, f"unknown capability {text!r} in {table_name(path[:2])}",
                             f"did you mean {close!r}?" if close
                             else f"known capabilities: {choices(known)}")
        if role not in can:
            of_role = f"role {role!r}" if role else "a component without a role"
            error = self.error(path, f"{table_name(path[:2])} cannot {verb} {text!r}: "
                               f"{of_role} has no way to", f"roles that {verb} {text!r}: "
                               f"{choices(can)}")
            if not cxx:
                raise error
            self._deferred.append(error)
        return text

    def provides(self, table: Mapping[str, Any], path: tuple[str, ...],
                 role: Role | None, cxx: bool) -> tuple[str, ...]:
        if "provides" not in table:
            return ROLE_PROVIDES[role] if role else ()
        names = self.strings(table["provides"], path + ("provides",))
        for i, name in enumerate(names):
            where = path + ("provides", str(i))
            can = CAPABILITIES[name].provided_by if name in CAPABILITIES else ()
            self.capability(name, where, role, can, "provide", cxx)
            if name in names[:i]:
                raise self.error(where, f"{table_name(path)} provides {name!r} twice")
        return names

    def consumes(self, table: Mapping[str, Any], path: tuple[str, ...],
                 role: Role | None, cxx: bool) -> tuple[Want, ...]:
        """Entries are "CAPABILITY" (its only provider) or "CAPABILITY@COMPONENT"."""
        if "consumes" not in table:
            return tuple(Want(cap, None, path) for cap in (ROLE_CONSUMES[role] if role else ()))
        wants: list[Want] = []
        for i, entry in enumerate(self.strings(table["consumes"], path + ("consumes",))):
            where = path + ("consumes", str(i))
            name, at, provider = entry.partition("@")
            if at and not provider:
                raise self.error(where, f"{entry!r} in {table_name(path)} names no provider",
                                 f'write "{name}" (its only provider) or "{name}@COMPONENT"')
            can = tuple(CAPABILITIES[name].hand) if name in CAPABILITIES else ()
            self.capability(name, where, role, can, "consume", cxx)
            if any(w.capability == name for w in wants):
                raise self.error(where, f"{table_name(path)} consumes {name!r} twice",
                                 "a component receives each capability from one provider")
            wants.append(Want(name, provider or None, where))
        return tuple(wants)

    def graph(self, comps: Sequence[ComponentConfig]) -> tuple[ComponentConfig, ...]:
        """Bind consumers to providers; return the components in dependency order."""
        bindings = resolve(self._nodes, self.error)
        check_forwarding(self._nodes, bindings, self.error)
        if self._deferred:
            raise self._deferred[0]
        names, deps = order(self._nodes, bindings, self.error)
        by_name = {c.name: c for c in comps}
        return tuple(replace(by_name[n], depends_on=deps[n],
                             consumes=MappingProxyType(bindings[n])) for n in names)

    def options(self, table: Mapping[str, Any], path: tuple[str, ...],
                known: Mapping[str, tuple[str, object]]) -> dict[str, object]:
        result: dict[str, object] = {}
        for key, (kind, default) in known.items():
            value = table.get(key, default)
            if value is None:  # a setting without a default, not given
                continue
            if kind == "port":
                port = self.typed(value, path + (key,), "integer")
                if not 1 <= port <= 65535:
                    raise self.error(path + (key,), f"{key} {port} in {table_name(path)} "
                                     "is out of range", "use a port between 1 and 65535",
                                     value=True)
            elif "|" in kind:
                self.choice(value, path + (key,), key, kind.split("|"))
            else:
                self.typed(value, path + (key,), kind)
            result[key] = value
        return result

    # -- cross-component checks ----------------------------------------------------------

    def check_unique(self, comps: Sequence[ComponentConfig]) -> None:
        seen_ports: dict[object, str] = {}
        seen_dirs: dict[Path, str] = {}
        for comp in comps:
            path = ("components", comp.name)
            port = comp.options.get("rpcport")
            if port is not None:
                if port in seen_ports:
                    raise self.error(path + ("rpcport",), f"rpcport {port} in "
                                     f"{table_name(path)} is already used by "
                                     f"[components.{seen_ports[port]}]",
                                     "give each component its own rpcport", value=True)
                seen_ports[port] = comp.name
            if comp.datadir in seen_dirs:
                raise self.error(path + ("datadir",), f"datadir of {table_name(path)} is "
                                 f"already used by [components.{seen_dirs[comp.datadir]}]",
                                 "give each component its own datadir")
            for other_dir, other in seen_dirs.items():
                # Nested datadirs would put one role's files inside another's view (a
                # wallet below the node's datadir is readable by the node).
                if comp.datadir.is_relative_to(other_dir) or other_dir.is_relative_to(
                        comp.datadir):
                    raise self.error(path + ("datadir",), f"datadir of {table_name(path)} "
                                     f"({comp.datadir}) overlaps the one of "
                                     f"[components.{other}] ({other_dir})",
                                     "give each component its own, separate datadir")
            seen_dirs[comp.datadir] = comp.name

    def check_datadirs(self, comps: Sequence[ComponentConfig], datadir: Path) -> None:
        """A component datadir is handed to the role's uid (recursively, as root) and
        bound read-write into its view: it must be a directory of its own, never the
        supervisor's datadir (control socket), nor a system directory."""
        for comp in comps:
            path = ("components", comp.name, "datadir")
            resolved = comp.datadir
            if resolved == datadir or datadir.is_relative_to(resolved):
                raise self.error(path, f"datadir {resolved} of {table_name(path[:2])} "
                                 "contains the supervisor's datadir",
                                 "use a subdirectory of [supervisor].datadir (the default)")
            if resolved.parent == resolved or resolved in _SYSTEM_DIRS:
                raise self.error(path, f"datadir {resolved} of {table_name(path[:2])} is a "
                                 "system directory", "use a directory of its own")
            images = datadir / IMAGES_DIR
            if resolved.is_relative_to(images) or images.is_relative_to(resolved):
                raise self.error(path, f"datadir {resolved} of {table_name(path[:2])} "
                                 f"overlaps {images}, where the disk images live",
                                 "use another directory")
