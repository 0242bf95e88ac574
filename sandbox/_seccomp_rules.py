"""Read the seccomp part of a policy: syscall groups, actions, errno rules, arg compares."""

from __future__ import annotations

import errno as errno_mod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._policy import ArgCompare, SeccompRules, SyscallRule
from ._syscalls import syscall_number
from ._tomldoc import TomlDoc

__all__ = ["ACTIONS", "load_dangerous", "load_groups", "seccomp_rules"]

ACTIONS = ("allow", "kill_process", "kill_thread", "trap", "log")
_RULE_KEYS: dict[str, Any] = {"syscall": str, "action": str, "args": ("list", dict)}
_ARG_KEYS: dict[str, Any] = {"arg": int, "eq": int, "mask": int, "value": int}
_LOW32 = 0xFFFFFFFF
_SYSCALL_HINT = "a typo? names are the kernel's, e.g. newfstatat, pread64"
_SYSCALLS_SCHEMA: dict[str, Any] = {"version": int, "groups": dict, "dangerous": ("list", str)}


class Groups:
    """Named syscall groups from ``syscalls.toml``, checked and expandable."""

    def __init__(self, doc: TomlDoc, table: Mapping[str, list[str]]) -> None:
        self.doc, self.table = doc, table

    def expand(self, name: str, seen: tuple[str, ...] = ()) -> set[str]:
        """Return every syscall in group ``name`` (nested groups included); KeyError if
        there is no such group, PolicyError on a cycle or an unknown syscall."""
        if name in seen:
            raise self.doc.error(("groups", name), f"group cycle: {' -> @'.join(seen)}")
        out: set[str] = set()
        for entry in self.table[name]:
            if entry.startswith("@"):
                if entry[1:] not in self.table:
                    raise self.doc.error(("groups", name), f"unknown group {entry!r}",
                                         needle=f'"{entry}"')
                out |= self.expand(entry[1:], seen + (name,))
            else:
                check_syscall(self.doc, ("groups", name), entry)
                out.add(entry)
        return out


def load_groups(path: Path) -> Groups:
    """Parse and fully check ``syscalls.toml``; raises PolicyError with file:line."""
    doc = TomlDoc(path)
    doc.check(doc.data, _SYSCALLS_SCHEMA)
    table = doc.data.get("groups", {})
    for name, members in table.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise doc.error(("groups", name), f"group {name!r} must be a list of names")
    groups = Groups(doc, table)
    for name in table:
        groups.expand(name)
    return groups


def load_dangerous(path: Path) -> frozenset[str]:
    """Return the ``dangerous`` list of ``syscalls.toml``: syscalls a role may only allow
    with a ``[seccomp.justification]``. Raises PolicyError (file:line) for an unknown
    name; an absent list is empty."""
    doc = TomlDoc(path)
    doc.check(doc.data, _SYSCALLS_SCHEMA)
    names = doc.data.get("dangerous", [])
    for name in names:
        check_syscall(doc, ("dangerous",), name)
    return frozenset(names)


def check_syscall(doc: TomlDoc, keys: tuple[str, ...], name: str) -> None:
    """Raise PolicyError unless libseccomp knows ``name`` (on some architecture)."""
    if syscall_number(name) is None:
        raise doc.error(keys, f"unknown syscall {name!r}", needle=f'"{name}"',
                        hint=_SYSCALL_HINT)


def parse_action(doc: TomlDoc, keys: tuple[str, ...], text: str, nth: int = 0) -> str:
    """Return a checked action string; raises PolicyError on an unknown one."""
    if text in ACTIONS:
        return text
    name = text.removeprefix("errno:")
    if isinstance(getattr(errno_mod, name, None), int) and name.startswith("E"):
        return f"errno:{name}"
    raise doc.error(keys, f"unknown action {text!r}", needle=text, nth=nth,
                    hint=", ".join(ACTIONS) + ', or "errno:ENAME"')


def seccomp_rules(doc: TomlDoc, table: Mapping[str, Any], groups: Groups) -> SeccompRules:
    """Build SeccompRules from a policy's ``[seccomp]`` table; raises PolicyError."""
    default = parse_action(doc, ("seccomp", "default_action"),
                           table.get("default_action", "kill_process"))
    allow: set[str] = set()
    for name in table.get("groups", []):
        if not name.startswith("@") or name[1:] not in groups.table:
            raise doc.error(("seccomp", "groups"), f"unknown syscall group {name!r}",
                            needle=f'"{name}"',
                            hint="groups: " + ", ".join("@" + g for g in groups.table))
        allow |= groups.expand(name[1:])
    for name in table.get("allow", []):
        check_syscall(doc, ("seccomp", "allow"), name)
        allow.add(name)
    errnos: dict[str, int] = {}
    for name, value in table.get("errno", {}).items():
        check_syscall(doc, ("seccomp", "errno", name), name)
        code = getattr(errno_mod, str(value), None)
        if not isinstance(code, int) or not str(value).startswith("E"):
            raise doc.error(("seccomp", "errno", name), f"unknown errno {value!r}",
                            hint="a name such as ENOSYS or EPERM")
        errnos[name] = code
    rules = tuple(_rule(doc, i, r) for i, r in enumerate(table.get("rule", [])))
    justification = _justification(doc, table.get("justification", {}))
    clash = (set(errnos) & allow) | {r.syscall for r in rules} & (allow | set(errnos))
    if clash:
        raise doc.error(("seccomp",), "syscalls both unconditional and in a rule or errno: "
                        + ", ".join(sorted(clash)),
                        hint="an unconditional allow or errno already decides them")
    return SeccompRules(default_action=default, allow=frozenset(allow), errno=errnos,
                        rules=rules, groups=tuple(table.get("groups", [])),
                        justification=justification)


def _justification(doc: TomlDoc, table: Mapping[str, Any]) -> dict[str, str]:
    keys = ("seccomp", "justification")
    for name, why in table.items():
        if syscall_number(name) is None:
            raise doc.error(keys + (name,), f"justification for unknown syscall {name!r}",
                            hint=_SYSCALL_HINT)
        if not isinstance(why, str) or not why.strip():
            raise doc.error(keys + (name,), f"justification for {name!r} must be a "
                            "non-empty string", hint='syscall = "why this role needs it"')
    return dict(table)


def _rule(doc: TomlDoc, index: int, table: Mapping[str, Any]) -> SyscallRule:
    keys = ("seccomp", "rule")
    doc.check(table, _RULE_KEYS, keys, nth=index)
    if "syscall" not in table:
        raise doc.error(keys, f"seccomp.rule #{index + 1} has no 'syscall'", nth=index)
    if syscall_number(table["syscall"]) is None:
        raise doc.error(keys, f"unknown syscall {table['syscall']!r}", nth=index,
                        needle=f'"{table["syscall"]}"', hint=_SYSCALL_HINT)
    action = parse_action(doc, keys, table.get("action", "allow"), nth=index)
    compares = []
    for arg in table.get("args", []):
        doc.check(arg, _ARG_KEYS, keys + ("args",), nth=index)
        problem = None
        if not 0 <= arg.get("arg", -1) <= 5:
            problem = "argument index 'arg' must be 0..5"
        elif ("eq" in arg) == ("mask" in arg or "value" in arg):
            problem = "give either eq = V or mask = M, value = V"
        mask = arg.get("mask", _LOW32) & _LOW32
        value = arg.get("eq", arg.get("value", 0))
        if problem is None and (value & ~mask or value < 0):
            problem = f"value {value:#x} has bits outside its 32-bit mask {mask:#x}"
        if problem:
            raise doc.error(keys, problem, nth=index, needle="args",
                            hint="args = [{ arg = 0, eq = V }] or [{ arg = 0, mask = M, "
                                 "value = V }]; arg 0 is the first argument")
        compares.append(ArgCompare(index=arg["arg"], mask=mask, value=value))
    return SyscallRule(syscall=table["syscall"], action=action, args=tuple(compares))
