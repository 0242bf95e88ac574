"""Append-only block file in Bitcoin Core's blk*.dat record format, durable before acknowledgement.

Each record is the regtest network magic, the block size (uint32 LE) and the serialized
block, as in Bitcoin Core's ``blocks/blk00000.dat``. A crash can only tear the last
record; at open the file is re-validated from genesis and such a tail is cut away.
"""

from __future__ import annotations

import fcntl
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import SupervisorError

from . import _consensus as consensus

BLOCK_FILE = "blk00000.dat"
_HEADER = struct.Struct("<4sI")
_MAX_BLOCK_BYTES = 4_000_000

_log = log.get_logger(subsystem="blockstore")


class BlockStoreError(SupervisorError):
    """The block file is unusable: corrupt before its tail, foreign, or in use by another node."""


@dataclass(frozen=True)
class StoredBlock:
    """Where one acknowledged block sits in the file, plus the header fields the chain needs."""

    hash: bytes  # internal byte order (bitcoinlib's GetHash())
    time: int
    bits: int
    offset: int  # of the block bytes, after the record header
    size: int


class BlockStore:
    """One open block file. Not thread-safe: one writer at a time (the node's mining lock)."""

    def __init__(self, path: Path, fd: int, end: int) -> None:
        self._path = path
        self._fd = fd
        self._end = end

    @classmethod
    def open(cls, blocks_dir: Path) -> tuple[BlockStore, list[StoredBlock]]:
        """Open (creating if needed) the store and return it with every valid block, genesis first.

        Blocking (reads and validates the whole file). A torn tail is truncated with a
        ``blockstore.truncated`` warning. Raises BlockStoreError if valid blocks follow an
        invalid record or another process holds the file, OSError on I/O failure.
        """
        blocks_dir.mkdir(parents=True, exist_ok=True)
        path = blocks_dir / BLOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise BlockStoreError(f"{path} is in use by another node process") from exc
        try:
            store, entries = cls._load(path, fd)
        except BaseException:
            os.close(fd)
            raise
        return store, entries

    @classmethod
    def _load(cls, path: Path, fd: int) -> tuple[BlockStore, list[StoredBlock]]:
        with open(fd, "rb", closefd=False) as f:
            data = f.read()
        entries, good_end = _scan(data)
        if good_end < len(data):
            if _valid_record_after(data, good_end + 1):
                raise BlockStoreError(f"{path} is corrupt at byte {good_end} (height "
                                      f"{len(entries)}) with valid blocks after it; "
                                      "move the datadir aside to start a fresh chain")
            _log.warning("blockstore.truncated", path=str(path), offset=good_end,
                         dropped_bytes=len(data) - good_end, height=len(entries) - 1)
            os.ftruncate(fd, good_end)
            os.fsync(fd)
        store = cls(path, fd, good_end)
        if not entries:
            entries = store.append([consensus.MinedBlock(
                consensus.GENESIS.GetHash(), consensus.GENESIS.nTime,
                consensus.GENESIS.serialize())])
            _fsync_dir(path.parent)
        return store, entries

    def append(self, blocks: Sequence[consensus.MinedBlock]) -> list[StoredBlock]:
        """Append ``blocks`` in order and fsync; return where they went.

        Blocking. Once it returns the blocks survive a crash. On OSError the file is cut
        back to its previous end and the error propagates.
        """
        buf = bytearray()
        entries = []
        offset = self._end
        for block in blocks:
            buf += _HEADER.pack(consensus.MAGIC, len(block.raw))
            offset += _HEADER.size
            entries.append(StoredBlock(block.hash, block.time, consensus.REGTEST_BITS,
                                       offset, len(block.raw)))
            buf += block.raw
            offset += len(block.raw)
        try:
            view = memoryview(buf)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError:
            os.ftruncate(self._fd, self._end)
            raise
        self._end = offset
        return entries

    def read(self, entry: StoredBlock) -> bytes:
        """Return the serialized block ``entry`` points at. Blocking (one pread)."""
        return os.pread(self._fd, entry.size, entry.offset)

    def size_on_disk(self) -> int:
        """Return the block file's size in bytes."""
        return self._end

    def close(self) -> None:
        """Flush and close the file (releasing its lock). Idempotent."""
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


def _scan(data: bytes) -> tuple[list[StoredBlock], int]:
    """Validate records from the start; return the valid prefix and where it ends."""
    entries: list[StoredBlock] = []
    pos = 0
    prev = b"\x00" * 32
    while pos < len(data):
        record = _record_at(data, pos)
        if record is None:
            break
        start, size = record
        try:
            block = consensus.check_block(data[start:start + size], len(entries), prev)
        except consensus.InvalidBlockError:
            break
        prev = block.GetHash()
        entries.append(StoredBlock(prev, block.nTime, block.nBits, start, size))
        pos = start + size
    return entries, pos


def _record_at(data: bytes, pos: int) -> tuple[int, int] | None:
    """Return (offset, size) of a complete record's block bytes at ``pos``, or None."""
    if pos + _HEADER.size > len(data):
        return None
    magic, size = _HEADER.unpack_from(data, pos)
    start = pos + _HEADER.size
    if magic != consensus.MAGIC or size > _MAX_BLOCK_BYTES or start + size > len(data):
        return None
    return start, size


def _valid_record_after(data: bytes, pos: int) -> bool:
    """True if some complete, proof-of-work-valid block record starts at or after ``pos``.

    A crash tears only the last record, so valid blocks after a bad record mean the file
    was damaged some other way and cutting it would lose acknowledged blocks.
    """
    at = data.find(consensus.MAGIC, pos)
    while at != -1:
        record = _record_at(data, at)
        if record is not None and consensus.is_block(data[record[0]:record[0] + record[1]]):
            return True
        at = data.find(consensus.MAGIC, at + 1)
    return False


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
