"""One wallet's SQLite file: seed, addresses, received outputs, and how a block changes them."""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bitcoin.core import CBlock, CTransaction, b2lx

from bitcoin_supervisor.interfaces import Block, BlockRef

from .._db import BlockTableMixin, open_database, transaction
from ._keys import DerivedAddress

WALLET_FILE = "wallet.sqlite"
STAGING_SUFFIX = ".creating"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS addresses (
    idx INTEGER PRIMARY KEY, address TEXT NOT NULL UNIQUE, script BLOB NOT NULL UNIQUE,
    pubkey BLOB NOT NULL, descriptor TEXT NOT NULL, label TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (height INTEGER PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS txs (txid TEXT PRIMARY KEY, height INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outputs (
    txid TEXT NOT NULL, vout INTEGER NOT NULL,
    address_idx INTEGER NOT NULL REFERENCES addresses(idx),
    value INTEGER NOT NULL, height INTEGER NOT NULL, coinbase INTEGER NOT NULL,
    spent_txid TEXT, spent_height INTEGER, PRIMARY KEY (txid, vout));
CREATE INDEX IF NOT EXISTS outputs_by_height ON outputs(height);
CREATE INDEX IF NOT EXISTS outputs_by_spent_height ON outputs(spent_height)
"""


@dataclass(frozen=True)
class Output:
    """An unspent output paying one of the wallet's addresses."""

    txid: str
    vout: int
    value: int
    height: int
    coinbase: bool
    address: str
    label: str
    script: bytes
    descriptor: str


class WalletStore(BlockTableMixin):
    """The durable state of one wallet. Every method commits before it returns, blocks
    on disk I/O, and raises sqlite3.Error on storage failures."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._scripts: dict[bytes, int] = dict(
            conn.execute("SELECT script, idx FROM addresses").fetchall())

    @staticmethod
    def create(directory: Path, seed: bytes, birth: BlockRef | None) -> WalletStore:
        """Create the wallet file in ``directory`` (which must not exist) and open it.

        The file is built in a sibling temporary directory and renamed into place, so
        a crash leaves either no wallet or a complete one. ``birth`` is the tip at
        creation: blocks up to it cannot pay addresses that do not exist yet.
        """
        staging = directory.with_name(f".{directory.name}{STAGING_SUFFIX}")
        shutil.rmtree(staging, ignore_errors=True)
        conn = open_database(staging / WALLET_FILE, _SCHEMA)
        try:
            with transaction(conn):
                conn.execute("INSERT INTO meta VALUES ('seed', ?)", (seed,))
                if birth is not None:
                    conn.execute("INSERT INTO blocks VALUES (?, ?)", (birth.height, birth.hash))
        finally:
            conn.close()
        os.rename(staging, directory)
        _fsync_dir(directory.parent)
        return WalletStore.open(directory)

    @staticmethod
    def open(directory: Path) -> WalletStore:
        """Open an existing wallet; raises FileNotFoundError if there is none."""
        path = directory / WALLET_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no wallet file at {path}")
        return WalletStore(open_database(path, _SCHEMA))

    def close(self) -> None:
        """Close the file; everything acknowledged is already on disk."""
        self._conn.close()

    def seed(self) -> bytes:
        """Return the BIP32 seed; raises LookupError if the file has none."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'seed'").fetchone()
        if row is None:
            raise LookupError("wallet file has no seed")
        return bytes(row[0])

    def next_index(self) -> int:
        """Return the derivation index of the next fresh address."""
        row = self._conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM addresses").fetchone()
        return int(row[0])

    def add_address(self, derived: DerivedAddress, label: str) -> None:
        """Store a newly handed-out address (durable when this returns)."""
        with transaction(self._conn):
            self._conn.execute(
                "INSERT INTO addresses VALUES (?, ?, ?, ?, ?, ?)",
                (derived.index, derived.address, derived.script, derived.pubkey,
                 derived.descriptor, label))
        self._scripts[derived.script] = derived.index

    def address_count(self) -> int:
        """Return how many addresses were handed out."""
        return len(self._scripts)

    def has_address(self, address: str) -> bool:
        """True if ``address`` belongs to this wallet."""
        row = self._conn.execute("SELECT 1 FROM addresses WHERE address = ?", (address,))
        return row.fetchone() is not None

    def address_info(self, address: str) -> tuple[str, bytes, str] | None:
        """(label, pubkey, descriptor) of one of our addresses, or None if not ours."""
        row = self._conn.execute("SELECT label, pubkey, descriptor FROM addresses "
                                 "WHERE address = ?", (address,)).fetchone()
        return None if row is None else (str(row[0]), bytes(row[1]), str(row[2]))

    def received(self) -> list[tuple[str, str, list[tuple[str, int, int]]]]:
        """Every handed-out address, oldest first: (address, label, [(txid, value,
        height)] of every output paid to it, spent or not)."""
        addresses = self._conn.execute(
            "SELECT idx, address, label FROM addresses ORDER BY idx").fetchall()
        paid: dict[int, list[tuple[str, int, int]]] = {}
        for idx, txid, value, height in self._conn.execute(
                "SELECT address_idx, txid, value, height FROM outputs ORDER BY height"):
            paid.setdefault(int(idx), []).append((str(txid), int(value), int(height)))
        return [(str(a), str(label), paid.get(int(idx), [])) for idx, a, label in addresses]

    def unspent(self) -> list[Output]:
        """Return every unspent output, oldest first."""
        rows = self._conn.execute(
            "SELECT o.txid, o.vout, o.value, o.height, o.coinbase, a.address, a.label,"
            " a.script, a.descriptor FROM outputs o JOIN addresses a ON a.idx = o.address_idx"
            " WHERE o.spent_txid IS NULL ORDER BY o.height, o.txid, o.vout").fetchall()
        return [Output(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], bytes(r[7]), r[8])
                for r in rows]

    def tx_count(self) -> int:
        """Return how many transactions paid or spent from this wallet."""
        return int(self._conn.execute("SELECT COUNT(*) FROM txs").fetchone()[0])

    # --- BlockStore ------------------------------------------------------------------

    def connect_block(self, block: Block, parsed: CBlock) -> None:
        """Record outputs paying us and spends of ours in ``block``, atomically with the
        new last-block marker."""
        with transaction(self._conn):
            for tx in parsed.vtx:
                txid = b2lx(tx.GetTxid())
                if self._apply_tx(tx, txid, block.height):
                    self._conn.execute("INSERT OR REPLACE INTO txs VALUES (?, ?)",
                                       (txid, block.height))
            self._conn.execute("INSERT OR REPLACE INTO blocks VALUES (?, ?)",
                               (block.height, block.hash))

    def _apply_tx(self, tx: CTransaction, txid: str, height: int) -> bool:
        mine = False
        coinbase = tx.is_coinbase()
        if not coinbase:
            for txin in tx.vin:
                spent = self._conn.execute(
                    "UPDATE outputs SET spent_txid = ?, spent_height = ?"
                    " WHERE txid = ? AND vout = ? AND spent_txid IS NULL",
                    (txid, height, b2lx(txin.prevout.hash), txin.prevout.n))
                mine = mine or spent.rowcount > 0
        for n, txout in enumerate(tx.vout):
            idx = self._scripts.get(bytes(txout.scriptPubKey))
            if idx is not None:
                self._conn.execute(
                    "INSERT OR REPLACE INTO outputs VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
                    (txid, n, idx, txout.nValue, height, int(coinbase)))
                mine = True
        return mine

    def rewind(self, height: int) -> None:
        """Forget every block above ``height`` and what it did to the wallet."""
        with transaction(self._conn):
            self._conn.execute("DELETE FROM outputs WHERE height > ?", (height,))
            self._conn.execute("UPDATE outputs SET spent_txid = NULL, spent_height = NULL"
                               " WHERE spent_height > ?", (height,))
            self._conn.execute("DELETE FROM txs WHERE height > ?", (height,))
            self._conn.execute("DELETE FROM blocks WHERE height > ?", (height,))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
