"""Load ``policies/<role>.toml``: check every key, expand groups and templates, or raise
PolicyError pointing at the offending ``file:line:col``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bitcoin_supervisor.interfaces import PolicyError

from ._policy import (
    LANDLOCK_SCOPES,
    NAMESPACES,
    RLIMITS,
    CgroupLimits,
    FilesystemView,
    LandlockRules,
    Policy,
    SeccompRules,
)
from ._seccomp_rules import load_dangerous, load_groups, seccomp_rules
from ._templates import POLICIES, TemplateError, expand_path, expand_port
from ._tomldoc import TomlDoc

__all__ = ["POLICY_DIR", "dangerous_syscalls", "load_policy", "unjustified_syscalls"]

POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"
_STRS = ("list", str)
_INTS = ("list", int)
_PORTS = ("list", (int, str))
# Every key a policy may hold; a nested dict is a table, ("list", T) an array of T.
_SCHEMA: dict[str, Any] = {
    "version": int,
    "role": str,
    "namespaces": {"unshare": _STRS, "hostname": str},
    "filesystem": {"read_only": _STRS, "read_write": _STRS, "tmpfs": _STRS,
                   "devices": _STRS, "proc": bool},
    "network": {"mode": str},
    "capabilities": {"keep": _STRS},
    "rlimits": {name: (int, str, list) for name in RLIMITS},
    "landlock": {"enabled": bool, "optional": bool, "scope": _STRS, "tcp_bind": _PORTS,
                 "tcp_connect": _PORTS},
    "seccomp": {"default_action": str, "groups": _STRS, "allow": _STRS, "errno": dict,
                "rule": ("list", dict), "justification": dict},
    "user": {"uid": int, "gid": int},
    "fds": {"keep": _INTS},
    "hardening": {"mdwe": bool},
    "cgroup": {"memory_max": (int, str), "pids_max": (int, str), "optional": (bool, str)},
}
_REQUIRED = ("version", "role", "namespaces", "filesystem", "network", "seccomp")
_CAP_NAMES = frozenset(
    "chown dac_override dac_read_search fowner fsetid kill setgid setuid setpcap "
    "linux_immutable net_bind_service net_broadcast net_admin net_raw ipc_lock ipc_owner "
    "sys_module sys_rawio sys_chroot sys_ptrace sys_pacct sys_admin sys_boot sys_nice "
    "sys_resource sys_time sys_tty_config mknod lease audit_write audit_control setfcap "
    "mac_override mac_admin syslog wake_alarm block_suspend audit_read perfmon bpf "
    "checkpoint_restore".split())


def load_policy(role: str, *, datadirs: Mapping[str, Path],
                options: Mapping[str, object] | None = None,
                policy_dir: Path | None = None, name: str | None = None,
                providers: Mapping[str, str] | None = None) -> Policy:
    """Return the resolved Policy of ``role`` from ``<policy_dir>/<role>.toml``, for the
    component ``name`` (default: ``role``, as in the bundled config).

    ``datadirs`` maps component names to datadirs and must hold ``name`` itself
    (``{datadir}``); ``providers`` maps each capability the component consumes to its
    provider's name (``{datadir:provider:CAP}``; none by default); ``options`` are the
    component's settings (``{option:NAME}`` ports). Pure: reads two files, touches no
    process state. Raises PolicyError (with file:line:col) for unknown keys, wrong
    types, unknown syscalls, groups, actions, errno names or templates, and when the
    component's own datadir is missing.
    """
    base = policy_dir if policy_dir is not None else POLICY_DIR
    path = base / f"{role}.toml"
    if not path.is_file():
        raise PolicyError(f"no sandbox policy for role {role!r}", path=str(path),
                          hint=f"roles with a policy: {_roles_in(base)}")
    doc = TomlDoc(path)
    doc.check(doc.data, _SCHEMA)
    for key in _REQUIRED:
        if key not in doc.data:
            raise doc.error((), f"missing required key {key!r}")
    if doc.data["role"] != role:
        raise doc.error(("role",), f"policy is for role {doc.data['role']!r}, not {role!r}")
    if role not in POLICIES:
        raise doc.error(("role",), f"unknown role {role!r}", needle=f'"{role}"',
                        hint="roles and program policies: " + ", ".join(POLICIES))
    own = name if name is not None else role
    if own not in datadirs:
        raise PolicyError(f"no datadir given for component {own!r}", path=str(path))
    groups = load_groups(base / "syscalls.toml")
    data = doc.data
    ctx = _Ctx(doc, own, datadirs, providers or {}, options or {})
    return Policy(
        role=role,
        source=path,
        namespaces=_namespaces(doc, data),
        hostname=data["namespaces"].get("hostname"),
        filesystem=ctx.filesystem(data["filesystem"]),
        network=data["network"]["mode"],
        capabilities=_capabilities(doc, data.get("capabilities", {})),
        rlimits=_rlimits(doc, data.get("rlimits", {})),
        landlock=ctx.landlock(data.get("landlock", {})),
        seccomp=seccomp_rules(doc, data["seccomp"], groups),
        uid=data.get("user", {}).get("uid"),
        gid=data.get("user", {}).get("gid"),
        keep_fds=tuple(data.get("fds", {}).get("keep", [0, 1, 2])),
        mdwe=data.get("hardening", {}).get("mdwe", True),
        cgroup=_cgroup(doc, data["cgroup"]) if "cgroup" in data else None,
    )


def dangerous_syscalls(policy_dir: Path | None = None) -> frozenset[str]:
    """The ``dangerous`` list of ``<policy_dir>/syscalls.toml``: syscalls a policy may
    allow only with a ``[seccomp.justification]``. Pure; raises PolicyError (file:line)."""
    base = policy_dir if policy_dir is not None else POLICY_DIR
    return load_dangerous(base / "syscalls.toml")


def unjustified_syscalls(policy: Policy, dangerous: frozenset[str]) -> tuple[str, ...]:
    """Return, sorted, every syscall in ``dangerous`` that ``policy`` lets through
    (groups, ``allow``, rules with an allowing action, or a permissive default action)
    without a non-empty ``[seccomp.justification]``. Pure, never raises."""
    rules = policy.seccomp
    allowing = ("allow", "log")
    allowed = set(rules.allow) | {r.syscall for r in rules.rules if r.action in allowing}
    if rules.default_action in allowing:
        # Everything not explicitly refused passes; an argument rule refuses only some calls.
        refused = set(rules.errno) | {r.syscall for r in rules.rules
                                      if r.action not in allowing and not r.args}
        allowed |= dangerous - refused
    return tuple(sorted(name for name in allowed & dangerous
                        if not rules.justification.get(name, "").strip()))


def waiter_rules(policy_dir: Path | None = None) -> SeccompRules:
    """The filter of the waiter left outside a pid namespace: group ``@waiter`` of
    ``syscalls.toml``, everything else kills. Raises PolicyError like load_policy."""
    base = policy_dir if policy_dir is not None else POLICY_DIR
    groups = load_groups(base / "syscalls.toml")
    try:
        allowed = groups.expand("waiter")
    except KeyError:
        raise PolicyError("syscall group 'waiter' is missing", path=str(base / "syscalls.toml"),
                          hint="the pid-namespace waiter needs it") from None
    return SeccompRules(default_action="kill_process", allow=frozenset(allowed), errno={},
                        rules=(), groups=("@waiter",))


def _check_root(doc: TomlDoc, keys: tuple[str, ...], entry: str, path: Path) -> None:
    """Each kind of path has its allowed root: a role writes only below a component
    datadir, takes devices only from /dev, and never sees the host's whole tree."""
    kind = keys[-1]
    if kind == "read_write" and not entry.removeprefix("-").startswith("{datadir"):
        raise doc.error(keys, f"read-write path {entry!r} is outside the component "
                        "datadirs", needle=entry, hint="read_write takes {datadir} or "
                        "{datadir:NAME}/...; other paths can be read_only or tmpfs")
    if kind == "devices" and path.parent != Path("/dev"):
        raise doc.error(keys, f"device {entry!r} is not a node of /dev", needle=entry,
                        hint='e.g. "/dev/null"')
    if kind in ("read_only", "read_write") and path == Path("/"):
        raise doc.error(keys, f"{kind} path {entry!r} is the whole host", needle=entry,
                        hint="name the directories the role needs, e.g. /usr")


def _roles_in(base: Path) -> str:
    names = sorted(p.stem for p in base.glob("*.toml") if p.stem != "syscalls")
    return ", ".join(names) or "none"


def _namespaces(doc: TomlDoc, data: Mapping[str, Any]) -> frozenset[str]:
    names = data["namespaces"].get("unshare", [])
    for name in names:
        if name not in NAMESPACES or name == "net":
            raise doc.error(("namespaces", "unshare"), f"unknown namespace {name!r}",
                            needle=f'"{name}"', hint="one of " + ", ".join(
                                n for n in NAMESPACES if n != "net")
                            + " (the network namespace follows [network] mode)")
    mode = data["network"].get("mode")
    if mode not in ("none", "host"):
        raise doc.error(("network", "mode"), f"unknown network mode {mode!r}",
                        hint='"none" (fresh empty namespace) or "host"')
    unshared = frozenset(names) | ({"net"} if mode == "none" else set())
    _check_contradictions(doc, data, unshared)
    return unshared


def _check_contradictions(doc: TomlDoc, data: Mapping[str, Any],
                          unshared: frozenset[str]) -> None:
    """Refuse settings the sandbox would silently not apply (each needs a namespace the
    policy does not create) or that cannot work together."""
    fs = data["filesystem"]
    view = any(fs.get(key) for key in ("read_only", "read_write", "tmpfs", "devices", "proc"))
    if view and "mount" not in unshared:
        raise doc.error(("namespaces", "unshare"), "[filesystem] needs \"mount\" in "
                        "[namespaces] unshare: without it the role sees the whole host",
                        hint='add "mount" to unshare')
    if fs.get("proc") and "pid" not in unshared:
        raise doc.error(("filesystem", "proc"), "proc = true without \"pid\" in "
                        "[namespaces] unshare would show the host's processes",
                        hint='add "pid" to unshare, or set proc = false')
    if data["namespaces"].get("hostname") is not None and "uts" not in unshared:
        raise doc.error(("namespaces", "hostname"), "hostname needs \"uts\" in "
                        "[namespaces] unshare (it would rename the host)",
                        hint='add "uts" to unshare, or drop hostname')
    landlock = data.get("landlock", {})
    for key in ("tcp_bind", "tcp_connect"):
        if landlock.get(key) and data["network"]["mode"] == "none":
            raise doc.error(("landlock", key), f"[landlock] {key} names ports, but "
                            '[network] mode = "none" leaves the role no network',
                            hint=f'set mode = "host", or {key} = []')


def _capabilities(doc: TomlDoc, table: Mapping[str, Any]) -> tuple[str, ...]:
    keep: list[str] = table.get("keep", [])
    for name in keep:
        if name.lower().removeprefix("cap_") not in _CAP_NAMES:
            raise doc.error(("capabilities", "keep"), f"unknown capability {name!r}",
                            needle=f'"{name}"', hint="names from capabilities(7), "
                            "e.g. net_bind_service")
    return tuple(name.lower().removeprefix("cap_") for name in keep)


def _rlimits(doc: TomlDoc, table: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for name, value in table.items():
        pair = value if isinstance(value, list) else [value, value]
        try:
            soft, hard = (_limit(v) for v in pair)
        except ValueError as exc:
            raise doc.error(("rlimits", name), f"bad rlimit {name}: {exc}",
                            hint='an integer, "infinity", or [soft, hard]') from exc
        if soft > hard:
            raise doc.error(("rlimits", name), f"rlimit {name}: soft {soft} > hard {hard}")
        out[name] = (soft, hard)
    return out


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_CGROUP_OPTIONAL = {False: "no", True: "yes", "unprivileged": "unprivileged"}


def _cgroup(doc: TomlDoc, table: Mapping[str, Any]) -> CgroupLimits:
    try:
        memory = _cgroup_limit(table.get("memory_max", "max"), units=True)
        if memory is not None and memory < _UNITS["M"]:
            raise ValueError(f"{memory} bytes is below 1M: the role could not even run")
    except ValueError as exc:
        raise doc.error(("cgroup", "memory_max"), f"bad memory_max: {exc}",
                        hint='bytes, a size such as "512M" or "2G" (K/M/G/T, powers of '
                             '1024), or "max"') from exc
    try:
        pids = _cgroup_limit(table.get("pids_max", "max"), units=False)
    except ValueError as exc:
        raise doc.error(("cgroup", "pids_max"), f"bad pids_max: {exc}",
                        hint='a positive number of processes and threads, or "max"') from exc
    optional = table.get("optional", False)
    if optional not in _CGROUP_OPTIONAL:
        raise doc.error(("cgroup", "optional"), f"bad optional value {optional!r}",
                        hint='false (fail closed), true (warn and run without limits) or '
                             '"unprivileged" (fail closed only as root)')
    return CgroupLimits(memory_max=memory, pids_max=pids,
                        optional=_CGROUP_OPTIONAL[optional])


def _cgroup_limit(value: object, *, units: bool) -> int | None:
    """A positive limit, or None for "max"; raises ValueError with the reason."""
    if value == "max":
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and units:
        match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)\s*", value, re.IGNORECASE)
        if match:
            number = int(match[1]) * _UNITS[match[2].upper()]
    if number is None or number <= 0:
        raise ValueError(f"{value!r} is not a positive limit")
    return number


def _limit(value: object) -> int:
    if value == "infinity":
        return -1 & 0xFFFFFFFFFFFFFFFF
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError(f"{value!r} is not a limit")


class _Ctx:
    """Template expansion for one load: errors point into ``doc``."""

    def __init__(self, doc: TomlDoc, name: str, datadirs: Mapping[str, Path],
                 providers: Mapping[str, str], options: Mapping[str, object]) -> None:
        self.doc, self.name, self.datadirs, self.options = doc, name, datadirs, options
        self.providers = providers

    def paths(self, keys: tuple[str, ...], entries: list[str],
              optional: set[Path]) -> tuple[Path, ...]:
        out: list[Path] = []
        for entry in entries:
            is_optional = entry.startswith("-")
            try:
                expanded = expand_path(entry.removeprefix("-"), self.name, self.datadirs,
                                       self.providers)
            except TemplateError as exc:
                raise self.doc.error(keys, str(exc), needle=entry, hint=exc.hint) from exc
            if expanded is None:
                continue  # names a component that is not configured: nothing to bind
            _check_root(self.doc, keys, entry, expanded)
            if is_optional:
                optional.add(expanded)
            if expanded not in out:
                out.append(expanded)
        return tuple(out)

    def filesystem(self, table: Mapping[str, Any]) -> FilesystemView:
        optional: set[Path] = set()
        key = ("filesystem",)
        return FilesystemView(
            read_only=self.paths(key + ("read_only",), table.get("read_only", []), optional),
            read_write=self.paths(key + ("read_write",), table.get("read_write", []),
                                  optional),
            tmpfs=self.paths(key + ("tmpfs",), table.get("tmpfs", []), optional),
            devices=self.paths(key + ("devices",), table.get("devices", []), optional),
            proc=table.get("proc", False),
            optional=frozenset(optional),
        )

    def ports(self, key: str, entries: list[int | str]) -> tuple[int, ...]:
        out: list[int] = []
        for entry in entries:
            try:
                port = expand_port(entry, self.options)
            except TemplateError as exc:
                raise self.doc.error(("landlock", key), str(exc), needle=str(entry),
                                     hint=exc.hint) from exc
            if port is not None and port not in out:
                out.append(port)
        return tuple(out)

    def landlock(self, table: Mapping[str, Any]) -> LandlockRules:
        scope = table.get("scope", [])
        for name in scope:
            if name not in LANDLOCK_SCOPES:
                raise self.doc.error(("landlock", "scope"), f"unknown scope {name!r}",
                                     needle=f'"{name}"', hint=", ".join(LANDLOCK_SCOPES))
        return LandlockRules(
            enabled=table.get("enabled", True),
            tcp_bind=self.ports("tcp_bind", table.get("tcp_bind", [])),
            tcp_connect=self.ports("tcp_connect", table.get("tcp_connect", [])),
            scope=frozenset(scope),
            optional=table.get("optional", False),
        )

