"""The txindex SQLite file: txid -> (block, position, serialized tx), kept per block."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bitcoin.core import CBlock, b2lx

from bitcoin_supervisor.interfaces import Block

from .._db import BlockTableMixin, open_database, transaction

INDEX_FILE = "txindex.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY, hash TEXT NOT NULL UNIQUE, time INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS txs (
    txid TEXT PRIMARY KEY, height INTEGER NOT NULL, position INTEGER NOT NULL,
    raw BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS txs_by_height ON txs(height)
"""


@dataclass(frozen=True)
class TxLocation:
    """An indexed transaction and the block that confirms it."""

    txid: str
    raw: bytes
    height: int
    position: int
    block_hash: str
    block_time: int


class TxIndexStore(BlockTableMixin):
    """The durable txindex. Every method commits before it returns, blocks on disk I/O
    and raises sqlite3.Error on storage failures."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @staticmethod
    def open(datadir: Path) -> TxIndexStore:
        """Open (creating if needed) ``<datadir>/txindex.sqlite``."""
        return TxIndexStore(open_database(datadir / INDEX_FILE, _SCHEMA))

    def close(self) -> None:
        """Close the file; everything acknowledged is already on disk."""
        self._conn.close()

    def find(self, txid: str) -> TxLocation | None:
        """Return where ``txid`` (lowercase hex) is confirmed, or None."""
        row = self._conn.execute(
            "SELECT t.txid, t.raw, t.height, t.position, b.hash, b.time FROM txs t"
            " JOIN blocks b ON b.height = t.height WHERE t.txid = ?", (txid,)).fetchone()
        if row is None:
            return None
        return TxLocation(row[0], bytes(row[1]), row[2], row[3], row[4], row[5])

    def connect_block(self, block: Block, parsed: CBlock) -> None:
        """Index every transaction of ``block`` atomically with the block marker.

        The genesis coinbase is not indexed (bitcoind: its output is unspendable).
        """
        with transaction(self._conn):
            self._conn.execute("INSERT OR REPLACE INTO blocks VALUES (?, ?, ?)",
                               (block.height, block.hash, parsed.nTime))
            if block.height == 0:
                return
            self._conn.executemany(
                "INSERT OR REPLACE INTO txs VALUES (?, ?, ?, ?)",
                [(b2lx(tx.GetTxid()), block.height, position, tx.serialize())
                 for position, tx in enumerate(parsed.vtx)])

    def rewind(self, height: int) -> None:
        """Forget every block above ``height`` and its transactions."""
        with transaction(self._conn):
            self._conn.execute("DELETE FROM txs WHERE height > ?", (height,))
            self._conn.execute("DELETE FROM blocks WHERE height > ?", (height,))
