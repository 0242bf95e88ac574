"""Opening a role's SQLite file so that every committed write survives a kill -9."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bitcoin_supervisor.interfaces import BlockRef


def open_database(path: Path, schema: str) -> sqlite3.Connection:
    """Open (creating if needed) the SQLite file at ``path`` and apply ``schema``.

    WAL journal with ``synchronous=FULL``: a transaction is on disk once its commit
    returns, and a crash at any instant leaves the last committed state. The connection
    is in autocommit mode; group writes with ``transaction()``. Raises sqlite3.Error.
    Blocks on disk I/O.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"{path}: cannot use WAL journal (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        with transaction(conn):
            for statement in _statements(schema):
                conn.execute(statement)
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the body as one atomic transaction: committed (durably) on normal exit,
    rolled back if the body raises. Must not be nested."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _statements(schema: str) -> list[str]:
    # executescript() would COMMIT on its own; split so the schema is one transaction.
    return [s.strip() for s in schema.split(";") if s.strip()]


class BlockTableMixin:
    """The processed-blocks marker both follower stores keep: table ``blocks(height, hash)``."""

    _conn: sqlite3.Connection

    def last_block(self) -> BlockRef | None:
        """Return the last processed block, or None before any."""
        row = self._conn.execute(
            "SELECT height, hash FROM blocks ORDER BY height DESC LIMIT 1").fetchone()
        return None if row is None else BlockRef(height=row[0], hash=row[1])

    def block_hash(self, height: int) -> str | None:
        """Return the recorded hash at ``height``, or None."""
        found = self._conn.execute("SELECT hash FROM blocks WHERE height = ?",
                                   (height,)).fetchone()
        return None if found is None else str(found[0])
