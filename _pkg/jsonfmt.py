"""JSON text with exact Bitcoin amounts: ``Decimal`` values written as bare numbers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = ["dumps", "loads"]


def loads(text: str | bytes) -> Any:
    """Parse JSON keeping non-integer numbers as ``Decimal`` (``50.00000000`` stays exact).

    Raises ValueError on malformed input.
    """
    return json.loads(text, parse_float=Decimal)


def dumps(value: Any, indent: int | None = None, _level: int = 0) -> str:
    """Serialize ``value``; Decimals become bare numbers (``50.00000000``), as bitcoind.

    The stdlib encoder can only turn a Decimal into a float or a string, which is why
    this small recursive writer exists. Raises TypeError for values JSON cannot represent.
    """
    if isinstance(value, Decimal):
        return format(value, "f")  # str() would give "0E-8" for zero
    pad = "" if indent is None else "\n" + " " * (indent * (_level + 1))
    end = "" if indent is None else "\n" + " " * (indent * _level)
    sep = ", " if indent is None else ","
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = (f"{pad}{json.dumps(str(k))}: {dumps(v, indent, _level + 1)}"
                 for k, v in value.items())
        return "{" + sep.join(items) + end + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        return "[" + sep.join(pad + dumps(v, indent, _level + 1) for v in value) + end + "]"
    return json.dumps(value)
