"""Resolve the config's capability graph: bind each consumer to one provider, derive the
start order, and refuse unknown or ambiguous providers and cycles at ``file:line:col``.

Split from ``_config.py`` (which parses one component table at a time) because these
checks need every component at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn, Protocol

from bitcoin_supervisor.interfaces import ConfigError

from ._capabilities import CAPABILITIES

__all__ = ["Locate", "Node", "Want", "check_forwarding", "close_match", "order", "resolve"]

Path = tuple[str, ...]


class Locate(Protocol):
    """Builds a ConfigError pointing at a key path of the config file."""

    def __call__(self, path: Path, message: str, hint: str | None = None, *,
                 value: bool = False) -> ConfigError: ...


@dataclass(frozen=True)
class Want:
    """One ``consumes`` entry before resolution: ``provider`` None means "the only one".
    ``path`` is where it is written (the component's table for a role default)."""

    capability: str
    provider: str | None
    path: Path


@dataclass(frozen=True)
class Node:
    """What resolution needs of one component."""

    name: str
    provides: tuple[str, ...]
    wants: tuple[Want, ...]
    depends_on: tuple[str, ...]  # explicit entries only
    # A C++ libmultiprocess program (its schema is a foreign one: "bitcoin-core",
    # "mp-example"), as opposed to our Python roles.
    cxx: bool = False


def close_match(word: str, known: Sequence[str]) -> str | None:
    """The most similar of ``known`` to ``word`` (for "did you mean"), or None."""
    import difflib  # an error path only: not a module the running daemon keeps

    found = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return found[0] if found else None


def _names(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values)


def resolve(nodes: Sequence[Node], locate: Locate) -> dict[str, dict[str, str]]:
    """Return, per component, its capability -> provider bindings.

    Raises ConfigError (via ``locate``) for a provider that is not a component, a
    component that does not provide what is asked of it, and a capability with no or
    several providers when none is named.
    """
    names = [n.name for n in nodes]
    providers = {cap: [n.name for n in nodes if cap in n.provides] for cap in CAPABILITIES}
    out: dict[str, dict[str, str]] = {}
    for node in nodes:
        table = f"[components.{node.name}]"
        bound: dict[str, str] = {}
        for want in node.wants:
            offered = providers[want.capability]
            if want.provider is not None:
                if want.provider not in names:
                    close = close_match(want.provider, names)
                    raise locate(want.path, f"{table} consumes {want.capability!r} from "
                                 f"unknown component {want.provider!r}",
                                 f"did you mean {close!r}?" if close
                                 else f"components that provide {want.capability!r}: "
                                 f"{_names(offered) or 'none'}")
                if want.provider not in offered:
                    raise locate(want.path, f"{table} consumes {want.capability!r} from "
                                 f"[components.{want.provider}], which does not provide it",
                                 f"components that provide {want.capability!r}: "
                                 f"{_names(offered) or 'none'}")
                bound[want.capability] = want.provider
            elif not offered:
                roles = _names(CAPABILITIES[want.capability].provided_by)
                raise locate(want.path, f"no component provides {want.capability!r}, "
                             f"which {table} consumes",
                             f"add a component of role {roles}, or set consumes = [] "
                             f"in {table}")
            elif len(offered) > 1:
                raise locate(want.path, f"ambiguous provider of {want.capability!r} for "
                             f"{table}: {_names(offered)} provide it",
                             f'name one, e.g. consumes = ["{want.capability}@{offered[0]}"]')
            else:
                bound[want.capability] = offered[0]
        out[node.name] = bound
    return out


def check_forwarding(nodes: Sequence[Node], bindings: Mapping[str, Mapping[str, str]],
                     locate: Locate) -> None:
    """Refuse a binding whose provider and consumer are both C++ libmultiprocess programs.

    The supervisor would hand the provider's capability on through its own (Python)
    link, and a C++ server without a thread pool runs each call on the thread named in
    ``Context.thread``: the consumer can only name threads of the supervisor's link, which
    live in the wrong process, so every call would fail at run time ("invalid thread
    handle"). Raises ConfigError at the consumer's ``consumes`` entry.
    """
    cxx = {n.name for n in nodes if n.cxx}
    for node in nodes:
        if node.name not in cxx:
            continue
        for want in node.wants:
            provider = bindings[node.name][want.capability]
            if provider in cxx:
                raise locate(want.path, f"[components.{node.name}] cannot consume "
                             f"{want.capability!r} from [components.{provider}]: both are "
                             "C++ libmultiprocess programs, and a capability of one cannot "
                             "be forwarded to the other through the supervisor (its calls "
                             "name a thread in the wrong process)",
                             "let the consumer connect to the provider itself, or use one "
                             "of our roles on one side")


def order(nodes: Sequence[Node], bindings: Mapping[str, Mapping[str, str]],
          locate: Locate) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """Return the start order (dependencies first; ties keep file order, so the order is
    predictable) and each component's dependencies (explicit ``depends_on`` first, then
    its providers). Unknown names and cycles raise ConfigError."""
    names = [n.name for n in nodes]
    edges: dict[tuple[str, str], Path] = {}  # (component, dependency) -> where written
    deps: dict[str, tuple[str, ...]] = {}
    for node in nodes:
        table: Path = ("components", node.name)
        for i, dep in enumerate(node.depends_on):
            if dep not in names:
                close = close_match(dep, names)
                raise locate(table + ("depends_on", str(i)), f"[components.{node.name}] "
                             f"depends on unknown component {dep!r}",
                             f"did you mean {close!r}?" if close
                             else f"defined components: {_names(names)}")
            edges[(node.name, dep)] = table + ("depends_on", str(i))
        for want in node.wants:
            edges.setdefault((node.name, bindings[node.name][want.capability]), want.path)
        deps[node.name] = tuple(dict.fromkeys(
            [*node.depends_on, *bindings[node.name].values()]))
    done: list[str] = []
    while len(done) < len(names):
        ready = [n for n in names if n not in done and set(done).issuperset(deps[n])]
        if not ready:
            _raise_cycle([n for n in names if n not in done], deps, edges, locate)
        done.append(ready[0])
    return done, deps


def _raise_cycle(left: Sequence[str], deps: Mapping[str, tuple[str, ...]],
                 edges: Mapping[tuple[str, str], Path], locate: Locate) -> NoReturn:
    chain = [left[0]]
    while True:
        nxt = next(d for d in deps[chain[-1]] if d in left)
        if nxt in chain:
            cycle = chain[chain.index(nxt):] + [nxt]
            break
        chain.append(nxt)
    where = [edges[(a, b)] for a, b in zip(cycle, cycle[1:], strict=False)]
    kinds = "depends_on" if all("depends_on" in w for w in where) else \
        "depends_on or consumes"
    raise locate(where[0], f"dependency cycle: {' -> '.join(cycle)}",
                 f"remove one of these {kinds} entries")
