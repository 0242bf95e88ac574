"""Find where a key path (``components.wallet.restart``) sits in raw TOML text.

Hand-written because ``tomllib`` returns plain dicts with no positions, and no stdlib or
installed parser keeps them; config errors must still point at ``file:line:col``. The
scanner only runs on text ``tomllib`` has already accepted, so it can be forgiving: it
understands table headers (dotted and quoted keys), dotted keys, inline tables, arrays
(elements are indexed as ``"0"``, ``"1"``, ...) and every string form, and skips comments.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

__all__ = ["Position", "TomlPositions"]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SCALAR_END = frozenset(",]}#\n\r")


@dataclass(frozen=True)
class Position:
    """1-based line/column of a key (or table header) and of its value."""

    line: int
    col: int
    value_line: int
    value_col: int


class TomlPositions:
    """Positions of every key path in one TOML document.

    Build with the document text; never raises on text that ``tomllib`` accepts (on other
    text it records what it could scan and stops).
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
        self._pos: dict[tuple[str, ...], Position] = {}
        self._i = 0
        try:
            self._document()
        except IndexError:
            # Only reachable on text tomllib rejected; keep what was found so far.
            pass

    def find(self, path: tuple[str, ...], *, value: bool = False) -> tuple[int, int] | None:
        """Return ``(line, col)`` of ``path`` (its value when ``value``), else of the
        longest prefix of ``path`` that is present, else ``None``."""
        for end in range(len(path), 0, -1):
            pos = self._pos.get(path[:end])
            if pos is not None:
                if value and end == len(path):
                    return pos.value_line, pos.value_col
                return pos.line, pos.col
        return None

    # -- scanning ------------------------------------------------------------------------

    def _linecol(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def _record(self, path: tuple[str, ...], key_at: int, value_at: int) -> None:
        if path not in self._pos:
            line, col = self._linecol(key_at)
            vline, vcol = self._linecol(value_at)
            self._pos[path] = Position(line, col, vline, vcol)

    def _peek(self, n: int = 1) -> str:
        return self._text[self._i:self._i + n]

    def _skip_blank(self, newlines: bool) -> None:
        text = self._text
        while self._i < len(text):
            ch = text[self._i]
            if ch in " \t" or (newlines and ch in "\r\n"):
                self._i += 1
            elif ch == "#":
                while self._i < len(text) and text[self._i] != "\n":
                    self._i += 1
            else:
                return

    def _document(self) -> None:
        table: tuple[str, ...] = ()
        while True:
            self._skip_blank(newlines=True)
            if self._i >= len(self._text):
                return
            start = self._i
            if self._peek() == "[":
                double = self._peek(2) == "[["
                self._i += 2 if double else 1
                table = self._key()
                self._record(table, start, start)
                self._i += 2 if double else 1
            else:
                self._keyval(table)

    def _keyval(self, table: tuple[str, ...]) -> None:
        start = self._i
        key = self._key()
        for end in range(1, len(key)):
            self._record(table + key[:end], start, start)
        self._i += 1  # '='
        self._skip_blank(newlines=False)
        self._record(table + key, start, self._i)
        self._value(table + key)

    def _key(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self._skip_blank(newlines=False)
            parts.append(self._key_part())
            self._skip_blank(newlines=False)
            if self._peek() != ".":
                return tuple(parts)
            self._i += 1

    def _key_part(self) -> str:
        quote = self._peek()
        if quote in ("'", '"'):
            return self._string()
        start = self._i
        while self._i < len(self._text) and self._text[self._i] in _BARE:
            self._i += 1
        return self._text[start:self._i]

    def _string(self) -> str:
        """Consume any TOML string form and return its (approximate) content."""
        text, quote = self._text, self._text[self._i]
        delim = quote * 3 if self._peek(3) == quote * 3 else quote
        self._i += len(delim)
        start = self._i
        while not text.startswith(delim, self._i):
            if self._i >= len(text):
                raise IndexError("unterminated string")  # only in text tomllib rejected
            if quote == '"' and text[self._i] == "\\":
                self._i += 1
            self._i += 1
        content = text[start:self._i]
        self._i += len(delim)
        # A multi-line string may end with up to two extra quotes inside the delimiter.
        while len(delim) == 3 and self._peek() == quote:
            self._i += 1
        return content

    def _value(self, path: tuple[str, ...]) -> None:
        start = self._i
        self._one_value(path)
        if self._i == start:
            # No progress: a character no value starts with (only in text tomllib
            # rejected). Stop rather than loop.
            raise IndexError("no value")

    def _one_value(self, path: tuple[str, ...]) -> None:
        ch = self._peek()
        if ch in ("'", '"'):
            self._string()
        elif ch == "{":
            self._inline_table(path)
        elif ch == "[":
            self._array(path)
        else:
            while self._i < len(self._text) and self._text[self._i] not in _SCALAR_END:
                self._i += 1

    def _inline_table(self, path: tuple[str, ...]) -> None:
        self._i += 1
        while True:
            self._skip_blank(newlines=False)
            if self._peek() == "}":
                self._i += 1
                return
            if self._peek() == ",":
                self._i += 1
                continue
            self._keyval(path)

    def _array(self, path: tuple[str, ...]) -> None:
        self._i += 1
        index = 0
        while True:
            self._skip_blank(newlines=True)
            ch = self._peek()
            if ch == "]":
                self._i += 1
                return
            if ch == ",":
                self._i += 1
                continue
            self._record(path + (str(index),), self._i, self._i)
            self._value(path + (str(index),))
            index += 1
