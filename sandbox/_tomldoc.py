"""Parse policy TOML and point errors at the ``line:col`` of a key or array element.

``tomllib`` keeps no positions. The supervisor has a full scanner (``supervisor/_tomlpos``)
but ``sandbox/`` may not import ``supervisor/``; policy files are plain data written in a
narrow style (table headers, ``key = value``, arrays of strings or numbers, arrays of
inline tables one per line), so this line-oriented locator is enough and runs only on text
``tomllib`` already accepted.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bitcoin_supervisor.interfaces import PolicyError

__all__ = ["TomlDoc", "locate"]

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.\-@"']+?)\s*=""")


def _split_key(text: str) -> tuple[str, ...]:
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([^.\s]+)', text)
    return tuple(next(p for p in groups if p) if any(groups) else "" for groups in parts)


def locate(text: str, path: tuple[str, ...], needle: str | None = None,
           nth: int = 0) -> tuple[int, int]:
    """Return 1-based ``(line, col)`` of the key ``path`` (a table header or an assignment),
    or of the first occurrence of ``needle`` at or after that key when ``needle`` is given.
    ``nth`` picks among repeated headers (``[[seccomp.rule]]`` number ``nth``, from 0).

    Falls back to the longest prefix of ``path`` that is found, then to ``(1, 1)``; never raises.
    """
    lines = text.splitlines()
    best: tuple[int, tuple[int, int]] = (0, (1, 1))
    table: tuple[str, ...] = ()
    seen: dict[tuple[str, ...], int] = {}
    skipping = False
    for number, line in enumerate(lines, start=1):
        header = _HEADER.match(line)
        if header:
            table = _split_key(header.group(1))
            full = table
            col = line.index("[") + 1
            seen[table] = seen.get(table, -1) + 1
            # Keys of an earlier element of an array of tables are not the ones meant.
            skipping = (line.lstrip().startswith("[[") and seen[table] < nth
                        and table == path[:len(table)])
            if skipping:
                continue
        else:
            key = _KEY.match(line)
            if not key or skipping:
                continue
            full = table + _split_key(key.group(1))
            col = key.start(1) + 1
        depth = _common_prefix(full, path)
        if depth == len(full) and (depth > best[0] or (
                depth == best[0] and header and seen[table] == nth)):
            best = (depth, (number, col))
    line_no, col = best[1]
    if needle is not None and best[0] == len(path):
        for number in range(line_no, len(lines) + 1):
            at = lines[number - 1].find(needle, col - 1 if number == line_no else 0)
            if at >= 0:
                return number, at + 1
    return line_no, col


def _common_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return n


class TomlDoc:
    """One parsed policy TOML file that points PolicyErrors at its own lines.

    Build with the file path; raises PolicyError when it is unreadable or not TOML.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise PolicyError(f"cannot read policy: {exc.strerror}", path=str(path)) from exc
        try:
            self.text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad_line = raw.count(b"\n", 0, exc.start) + 1
            bad_col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
            raise PolicyError(f"policy is not UTF-8 (byte {raw[exc.start]:#04x})",
                              path=str(path), line=bad_line, col=bad_col,
                              hint="save it as UTF-8") from exc
        try:
            self.data = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            where = re.search(r"line (\d+), column (\d+)", str(exc))
            line, col = (int(where[1]), int(where[2])) if where else (None, None)
            raise PolicyError(f"not valid TOML: {str(exc).split(' (at')[0]}",
                              path=str(path), line=line, col=col) from exc

    def error(self, keys: tuple[str, ...], message: str, *, hint: str | None = None,
              needle: str | None = None, nth: int = 0) -> PolicyError:
        """Return (not raise) a PolicyError located at ``keys`` (or ``needle`` after it;
        ``nth`` selects an element of an array of tables)."""
        line, col = locate(self.text, keys, needle, nth)
        return PolicyError(message, path=str(self.path), line=line, col=col, hint=hint)

    def check(self, table: Mapping[str, Any], schema: Mapping[str, Any],
              keys: tuple[str, ...] = (), nth: int = 0) -> None:
        """Raise PolicyError for the first unknown key or value of the wrong type."""
        for key, value in table.items():
            here = keys + (key,)
            if key not in schema:
                raise self.error(here, f"unknown key {'.'.join(here)!r}", nth=nth,
                                 needle=key if nth else None,
                                 hint=f"known keys here: {', '.join(sorted(schema))}")
            want = schema[key]
            if isinstance(want, dict):
                if not isinstance(value, dict):
                    raise self.error(here, f"{'.'.join(here)!r} must be a table")
                self.check(value, want, here)
            elif isinstance(want, tuple) and want and want[0] == "list":
                if not isinstance(value, list) or not all(
                        isinstance(v, want[1]) and not isinstance(v, bool) for v in value):
                    raise self.error(here, f"{'.'.join(here)!r} has the wrong type",
                                     hint=f"expected a list of {_type_name(want[1])}")
            elif not isinstance(value, want) or (isinstance(value, bool) and want is int):
                raise self.error(here, f"{'.'.join(here)!r} has the wrong type",
                                 hint=f"expected {_type_name(want)}")


def _type_name(t: Any) -> str:
    if isinstance(t, tuple):
        return " or ".join(x.__name__ for x in t)
    return str(t.__name__)
