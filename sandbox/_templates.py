"""Expand the ``{...}`` templates of policy paths and ports into concrete values.

A policy file is per role, but the datadirs it names belong to components: ``{datadir}``
is the confined component's own, ``{datadir:NAME}`` the component called NAME, and
``{datadir:provider:CAP}`` the component that provides capability CAP to the confined one
(the index reads its own chain provider's blocks, whatever that node is called).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["POLICIES", "PROGRAM_POLICIES", "ROLES", "TemplateError", "expand_path",
           "expand_port"]

ROLES = ("node", "wallet", "index")
# Shipped policies for programs that are none of our roles (a real Bitcoin Core
# bitcoin-node, libmultiprocess's example programs): named by a component's `sandbox`.
PROGRAM_POLICIES = ("bitcoin-node", "mp-example")
POLICIES = ROLES + PROGRAM_POLICIES
_FIELD = re.compile(r"\{([^{}]*)\}")
_PACKAGE_NAME = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*")
_COMPONENT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")  # as the supervisor's config
_KNOWN = ("{datadir}, {datadir:NAME}, {datadir:provider:CAPABILITY}, {venv}, {prefix}, "
          "{package}, {package:NAME}")


class TemplateError(ValueError):
    """A template names something that does not exist; ``hint`` says what does."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def expand_path(entry: str, name: str, datadirs: Mapping[str, Path],
                providers: Mapping[str, str] | None = None) -> Path | None:
    """Return ``entry`` with every template replaced, as an absolute normalised Path.

    ``name`` is the confined component (its datadir is ``datadirs[name]``); ``datadirs``
    maps component names to datadirs; ``providers`` maps each capability the component
    consumes to the component providing it. Returns None when the entry names a
    component that is not configured or a capability this one does not consume (the
    entry then grants nothing). Raises TemplateError for an unknown template, a bad
    component name, the component's own missing datadir, or a result that is not
    absolute.
    """
    missing = False

    def one(match: re.Match[str]) -> str:
        nonlocal missing
        value = _field(match.group(1), name, datadirs, providers or {})
        if value is None:
            missing = True
            return ""
        return str(value)

    text = _FIELD.sub(one, entry)
    if missing:
        return None
    path = Path(text)
    if not path.is_absolute() or ".." in path.parts:
        raise TemplateError(f"path {entry!r} is not absolute after expansion ({text!r})",
                            "start with / or with a template such as {datadir}")
    return Path(*path.parts)


def _field(field: str, own: str, datadirs: Mapping[str, Path],
           providers: Mapping[str, str]) -> Path | None:
    kind, _, arg = field.partition(":")
    if kind == "datadir":
        other = arg or own
        if arg.startswith("provider:"):
            capability = arg.removeprefix("provider:")
            if not _COMPONENT_NAME.fullmatch(capability):
                raise TemplateError(f"bad capability name {capability!r} in {{{field}}}",
                                    "e.g. {datadir:provider:chain}")
            if capability not in providers:
                return None  # this component does not consume it
            other = providers[capability]
        elif not _COMPONENT_NAME.fullmatch(other):
            raise TemplateError(f"bad component name {other!r} in {{{field}}}",
                                "a component name from the config, e.g. {datadir:node}, "
                                "or {datadir:provider:CAPABILITY}")
        if other not in datadirs:
            if other == own:
                raise TemplateError(f"no datadir given for component {own!r}", _KNOWN)
            return None
        return Path(datadirs[other]).absolute()
    if kind == "venv" and not arg:
        return Path(sys.prefix)
    if kind == "prefix" and not arg:
        return Path(sys.base_prefix)
    if kind == "package":
        return _package_dir(arg)
    raise TemplateError(f"unknown template {{{field}}}", "known templates: " + _KNOWN)


def _package_dir(name: str) -> Path:
    """The folder holding ``bitcoin_supervisor[.name]`` (editable or installed)."""
    if name and not _PACKAGE_NAME.fullmatch(name):
        raise TemplateError(f"bad package name {name!r}", "e.g. {package:roles}")
    full = "bitcoin_supervisor" + (f".{name}" if name else "")
    spec = importlib.util.find_spec(full)
    if spec is None or not spec.submodule_search_locations:
        raise TemplateError(f"no package {full!r} is installed", "e.g. {package:roles}")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def expand_port(entry: int | str, options: Mapping[str, object]) -> int | None:
    """Return a TCP port from an int or ``"{option:NAME}"``; None when the component has
    no such option (the rule then grants nothing). Raises TemplateError otherwise."""
    if isinstance(entry, int):
        port = entry
    else:
        match = re.fullmatch(r"\{option:([a-z0-9_]+)\}", entry)
        if not match:
            raise TemplateError(f"bad port {entry!r}", 'an integer or "{option:NAME}"')
        value = options.get(match.group(1))
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise TemplateError(f"option {match.group(1)!r} is {value!r}, not a port",
                                "set it to an integer")
        port = value
    if not 0 <= port <= 65535:
        raise TemplateError(f"port {port} is out of range", "0..65535")
    return port
