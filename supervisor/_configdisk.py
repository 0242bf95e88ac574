"""The ``disk_budget`` and ``inode_budget`` keys of a component (its kernel-enforced disk
budget: a loop-mounted image on its datadir), with role defaults.

Split from ``_config.py``: sizes have their own little grammar ("2G", "512M", "none").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bitcoin_supervisor.interfaces import DiskBudget

from ._configcheck import TomlChecker, table_name, type_name

__all__ = ["DISK_DEFAULTS", "DISK_KEYS", "check_disk", "parse_size"]

DISK_KEYS = ("disk_budget", "inode_budget")
# Per role: (bytes, inodes). Images are sparse: a budget costs host space only as the
# component fills it. A program that is none of our roles gets none unless configured.
DISK_DEFAULTS: Mapping[str | None, DiskBudget | None] = {
    "node": DiskBudget(16 << 30, 200_000),
    "wallet": DiskBudget(1 << 30, 20_000),
    "index": DiskBudget(4 << 30, 100_000),
    None: None,
}
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", re.IGNORECASE)
# ext4 needs room for its metadata and journal; below this an image is useless.
MIN_BYTES = 16 << 20
MAX_BYTES = 1 << 50
MIN_INODES = 64
MAX_INODES = 1 << 31


def parse_size(text: str) -> int | None:
    """Bytes of ``"2G"``, ``"512M"``, ``"1.5GiB"``, ``"4096"`` (binary units); None when
    the text is no size."""
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def check_disk(checker: TomlChecker, table: Mapping[str, Any], path: tuple[str, ...],
               role: str | None) -> DiskBudget | None:
    """The component's budget: its keys, else its role's default; None for
    ``disk_budget = "none"`` (no image: today's plain datadir). Raises a located
    ConfigError for a wrong type, an unreadable size or one out of range."""
    default = DISK_DEFAULTS.get(role)
    raw = table.get("disk_budget")
    if raw == "none":
        if "inode_budget" in table:
            raise checker.error(path + ("inode_budget",), f"inode_budget in "
                                f"{table_name(path)} needs a disk_budget, not \"none\"",
                                "remove inode_budget or set a disk_budget")
        return None
    if raw is None and default is None:
        if "inode_budget" in table:
            raise checker.error(path + ("inode_budget",), f"inode_budget in "
                                f"{table_name(path)} needs a disk_budget",
                                'add disk_budget = "1G" (or another size)')
        return None
    size = default.bytes if raw is None and default is not None else _bytes(
        checker, raw, path + ("disk_budget",))
    inodes = (_inodes(checker, table["inode_budget"], path + ("inode_budget",))
              if "inode_budget" in table
              else default.inodes if default is not None else max(MIN_INODES, size >> 16))
    return DiskBudget(bytes=size, inodes=inodes)


def _bytes(checker: TomlChecker, raw: object, where: tuple[str, ...]) -> int:
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise checker.error(where, f"disk_budget in {table_name(where[:-1])} must be a "
                            f"size such as \"2G\" or \"none\", not {type_name(raw)}",
                            value=True)
    size = raw if isinstance(raw, int) else parse_size(raw)
    if size is None:
        raise checker.error(where, f"disk_budget {raw!r} in {table_name(where[:-1])} is "
                            "not a size", 'write bytes or a number with K, M, G or T, '
                            'e.g. "2G", or "none" for no budget', value=True)
    if not MIN_BYTES <= size <= MAX_BYTES:
        raise checker.error(where, f"disk_budget {raw!r} in {table_name(where[:-1])} is "
                            "out of range", "use between 16M and 1024T", value=True)
    return size


def _inodes(checker: TomlChecker, raw: object, where: tuple[str, ...]) -> int:
    count = checker.typed(raw, where, "integer")
    if not MIN_INODES <= count <= MAX_INODES:
        raise checker.error(where, f"inode_budget {count} in {table_name(where[:-1])} is "
                            "out of range", f"use between {MIN_INODES} and {MAX_INODES}",
                            value=True)
    return int(count)
