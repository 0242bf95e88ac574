"""What a consumer's capabilities are minted with: the ``rpc_methods`` and ``limits``
keys of a component table, and the rule that no two consumers share an RPC name."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from bitcoin_supervisor.interfaces import ChainLimits

from ._capabilities import ROLE_RPC_METHODS
from ._configcheck import TomlChecker, choices, table_name

__all__ = ["GRANT_KEYS", "check_grant", "check_rpc_owners"]

GRANT_KEYS = ("rpc_methods", "limits")
_LIMIT_KEYS = tuple(f.name for f in dataclasses.fields(ChainLimits))
_NAME_RE = re.compile(r"[a-z0-9_]+")
_UINT32_MAX = 2**32 - 1


def check_grant(checker: TomlChecker, table: Mapping[str, Any], path: tuple[str, ...],
                role: str | None) -> tuple[tuple[str, ...], ChainLimits]:
    """The RPC names (default: the role's) and limits (default: ChainLimits()) of the
    component at ``path``; raises a located ConfigError."""
    limits = _limits(checker, table.get("limits", {}), path + ("limits",))
    names = ROLE_RPC_METHODS.get(role or "", ())
    if "rpc_methods" in table:
        names = checker.strings(table["rpc_methods"], path + ("rpc_methods",))
    for i, name in enumerate(names):
        where = path + ("rpc_methods", str(i))
        if not _NAME_RE.fullmatch(name) or len(name) > limits.max_name_length:
            raise checker.error(where, f"RPC name {name[:80]!r} in {table_name(path)} is not "
                                f"1-{limits.max_name_length} of a-z, 0-9, _", value=True)
        if name in names[:i]:
            raise checker.error(where, f"{table_name(path)} lists RPC name {name!r} twice",
                                value=True)
    if len(names) > limits.max_rpc_names:
        # Pointing at rpc_methods, or at [limits] when the names are the role's defaults.
        raise checker.error(path + (("rpc_methods",) if "rpc_methods" in table else
                                    ("limits", "max_rpc_names")), f"{len(names)} RPC names in "
                            f"{table_name(path)}, more than limits.max_rpc_names "
                            f"({limits.max_rpc_names})")
    return names, limits


def _limits(checker: TomlChecker, value: object, path: tuple[str, ...]) -> ChainLimits:
    body = checker.typed(value, path, "table")
    for key in body:
        if key not in _LIMIT_KEYS:
            raise checker.error(path + (key,), f"unknown limit {key!r} in "
                                f"{table_name(path)}", f"limits: {choices(_LIMIT_KEYS)}")
    given = {}
    for key in body:
        number = checker.number(body, path, key, 0, 1, integer=True)
        if number > _UINT32_MAX:
            raise checker.error(path + (key,), f"{key} {number} in {table_name(path)} is "
                                f"above {_UINT32_MAX}", value=True)
        given[key] = number
    return ChainLimits(**given)


def check_rpc_owners(checker: TomlChecker, comps: Sequence[Any]) -> None:
    """No RPC name may be granted to two consumers of the same provider: the node
    would refuse the second consumer's capability (each name has one owner)."""
    owners: dict[tuple[str, str], str] = {}
    for comp in comps:
        for provider in set(comp.consumes.values()):
            for i, name in enumerate(comp.rpc_methods):
                other = owners.setdefault((provider, name), comp.name)
                if other != comp.name:
                    raise checker.error(("components", comp.name, "rpc_methods", str(i)),
                                        f"RPC name {name!r} of [components.{comp.name}] is "
                                        f"already granted to [components.{other}] at "
                                        f"{provider}", "each RPC name has one owner",
                                        value=True)
