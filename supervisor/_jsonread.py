"""Typed reads of decoded JSON for the control protocol: every error names the field.

The records live in ``control_protocol``; this is the machinery they share, kept apart so
that module reads as the protocol's definition. Stdlib only, like it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

from bitcoin_supervisor.interfaces import SupervisorError

__all__ = ["ControlError", "Obj", "ProtocolError", "Record", "plain"]

_T = TypeVar("_T")
_E = TypeVar("_E", bound=enum.Enum)


class ControlError(SupervisorError):
    """The control socket could not be created or used, or the daemon answered badly."""


class ProtocolError(ControlError):
    """A request or reply does not match this protocol; the message names the field."""


_KINDS: dict[type, str] = {str: "a string", int: "an integer", float: "a number",
                           bool: "a boolean", dict: "an object", list: "an array"}


def _kind_of(value: object) -> str:
    if value is None:
        return "null"
    for kind, name in ((bool, "boolean"), (int, "integer"), (float, "number"),
                       (str, "string"), (dict, "object"), (list, "array")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


class Obj:
    """A JSON object being read: typed field access whose errors name the field's path."""

    def __init__(self, value: object, where: str) -> None:
        if not isinstance(value, dict):
            prefix = f"{where}: " if where else ""
            raise ProtocolError(f"{prefix}expected an object, got {_kind_of(value)}")
        self.value: dict[str, Any] = value
        self.where = where

    def path(self, key: str) -> str:
        """The path of ``key`` in this object, for error messages."""
        return f"{self.where}.{key}" if self.where else key

    def only(self, allowed: tuple[str, ...]) -> None:
        """Refuse keys this protocol does not define (requests: a typo must not pass)."""
        for key in self.value:
            if key not in allowed:
                raise ProtocolError(f"{self.path(key)}: unknown key; expected one of "
                                    + ", ".join(allowed))

    def _raw(self, key: str, optional: bool) -> object:
        if key not in self.value and not optional:
            raise ProtocolError(f"{self.path(key)}: missing")
        return self.value.get(key)

    def get(self, key: str, kind: type[_T]) -> _T:
        """The value at ``key``, which must be of ``kind`` (a number may be an integer)."""
        value = self._raw(key, optional=False)
        return _check(value, kind, self.path(key))

    def maybe(self, key: str, kind: type[_T], *, optional: bool = False) -> _T | None:
        """Like ``get`` but null is allowed; with ``optional`` the key may be absent too."""
        value = self._raw(key, optional)
        if value is None:
            return None
        return _check(value, kind, self.path(key), nullable=True)

    def strings(self, key: str) -> tuple[str, ...]:
        """An array of strings."""
        items = self.get(key, list)
        for index, item in enumerate(items):
            _check(item, str, f"{self.path(key)}[{index}]")
        return tuple(items)

    def choice(self, key: str, enum_type: type[_E]) -> _E:
        """A value of ``enum_type``, given by its value."""
        value = self._raw(key, optional=False)
        try:
            return enum_type(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in enum_type)
            shown = repr(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise ProtocolError(f"{self.path(key)}: expected one of {allowed}, "
                                f"got {shown}") from None

    def record(self, key: str, read: Callable[[object, str], _T], *,
               nullable: bool = False, optional: bool = False) -> _T | None:
        """A nested record read by ``read`` (a ``from_json``); None if null and allowed."""
        value = self._raw(key, optional)
        if value is None and (nullable or optional):
            return None
        return read(value, self.path(key))


def _check(value: object, kind: type[_T], where: str, nullable: bool = False) -> _T:
    # bool is an int subclass, yet true is no pid; a JSON integer is a fine number.
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if not ok and kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # type: ignore[return-value]
    if not ok:
        expected = _KINDS.get(kind, kind.__name__) + (" or null" if nullable else "")
        raise ProtocolError(f"{where}: expected {expected}, got {_kind_of(value)}")
    return value  # type: ignore[return-value]


def plain(value: Any) -> Any:
    """A record as JSON-ready values: enums by value, tuples as lists, nested records."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    return value


class Record:
    """Shared ``to_json`` of the records: every field, in declaration order."""

    def to_json(self) -> dict[str, Any]:
        """Return this record as a JSON-ready dict (the keys ``status --json`` prints)."""
        out: dict[str, Any] = plain(self)
        return out
