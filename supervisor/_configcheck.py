"""Typed, located checks of parsed TOML values: each failure is a ConfigError at
``file:line:col`` with a hint. The config validator builds on these."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from bitcoin_supervisor.interfaces import ConfigError

from ._configgraph import close_match
from ._tomlpos import TomlPositions

__all__ = ["TomlChecker", "choices", "table_name", "type_name"]


def table_name(path: tuple[str, ...]) -> str:
    """``[a.b]`` for a table path, "the top level" for the root."""
    return f"[{'.'.join(path)}]" if path else "the top level"


def type_name(value: object) -> str:
    """The TOML type name of a parsed value."""
    match value:
        case bool():
            return "boolean"
        case int():
            return "integer"
        case float():
            return "float"
        case str():
            return "string"
        case list():
            return "array"
        case dict():
            return "table"
        case _:
            return "date/time"


def choices(values: Sequence[str]) -> str:
    """Allowed values as hints show them: quoted, comma-separated."""
    return ", ".join(repr(v) for v in values)


class TomlChecker:
    """Checks values of one parsed TOML document; ``shown`` is its path in messages."""

    def __init__(self, text: str, shown: str) -> None:
        self._positions = TomlPositions(text)
        self._shown = shown

    def error(self, path: tuple[str, ...], message: str, hint: str | None = None,
              *, value: bool = False) -> ConfigError:
        # A key that is missing altogether is reported at the top of the file.
        line, col = self._positions.find(path, value=value) or (1, 1)
        return ConfigError(message, path=self._shown, line=line, col=col, hint=hint)

    # -- generic checks ------------------------------------------------------------------

    def keys(self, table: Mapping[str, Any], path: tuple[str, ...],
             known: Sequence[str]) -> None:
        for key in table:
            if key not in known:
                close = close_match(key, known)
                hint = f"did you mean {close!r}?" if close else f"known keys: {choices(known)}"
                raise self.error(path + (key,),
                                 f"unknown key {key!r} in {table_name(path)}", hint)

    def typed(self, value: object, path: tuple[str, ...], kind: str) -> Any:
        ok = {
            "string": isinstance(value, str),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "array": isinstance(value, list),
            "table": isinstance(value, dict),
            "boolean": isinstance(value, bool),
        }[kind]
        if not ok:
            article = "an" if kind[0] in "aeiou" else "a"
            raise self.error(path, f"{path[-1]!r} in {table_name(path[:-1])} must be "
                             f"{article} {kind}, not {type_name(value)}", value=True)
        return float(value) if kind == "number" else value  # type: ignore[arg-type]

    def strings(self, value: object, path: tuple[str, ...]) -> tuple[str, ...]:
        items = self.typed(value, path, "array")
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise self.error(path + (str(i),), f"{path[-1]!r} in "
                                 f"{table_name(path[:-1])} must be an array of strings, "
                                 f"found {type_name(item)}")
        return tuple(items)

    def choice(self, value: object, path: tuple[str, ...], noun: str,
               allowed: Sequence[str]) -> str:
        text = cast(str, self.typed(value, path, "string"))
        if text not in allowed:
            close = close_match(text, allowed)
            hint = f"allowed: {choices(allowed)}" + (f"; did you mean {close!r}?" if close else "")
            raise self.error(path, f"unknown {noun} {text!r} in {table_name(path[:-1])}",
                             hint, value=True)
        return text

    def number(self, table: Mapping[str, Any], path: tuple[str, ...], key: str,
               default: float, minimum: float, *, integer: bool = False) -> Any:
        if key not in table:
            return default
        value = self.typed(table[key], path + (key,), "integer" if integer else "number")
        if value < minimum:
            raise self.error(path + (key,), f"{key!r} in {table_name(path)} must be "
                             f">= {minimum}, not {value}", value=True)
        return value

    def directory(self, value: object, path: tuple[str, ...], base: Path) -> Path:
        text = cast(str, self.typed(value, path, "string"))
        if not text:
            raise self.error(path, f"{path[-1]!r} in {table_name(path[:-1])} must not be "
                             "empty", value=True)
        return (base / Path(text).expanduser()).resolve()
