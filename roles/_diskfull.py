"""Recognising a full datadir (its disk budget is used up) in whatever error a write
raised, and saying so to RPC callers instead of "failed internally"."""

from __future__ import annotations

import errno
import sqlite3

__all__ = ["RPC_DATABASE_ERROR", "disk_full_message", "is_disk_full"]

RPC_DATABASE_ERROR = -20  # bitcoind: "Database error"
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full"


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) says the filesystem has no space or inode
    left: ENOSPC/EDQUOT, or SQLite's SQLITE_FULL."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return True
        if isinstance(current, sqlite3.Error):
            code = getattr(current, "sqlite_errorcode", None)
            if (isinstance(code, int) and code & 0xFF == _SQLITE_FULL) \
                    or "database or disk is full" in str(current):
                return True
        current = current.__cause__ or current.__context__
    return False


def disk_full_message(component: str, doing: str) -> str:
    """The one line a caller sees: what could not be written, and what to do."""
    return (f"Disk full: {component} could not {doing} (its datadir is out of space or "
            "inodes); free space in it or grow its disk_budget, and it carries on by itself")
