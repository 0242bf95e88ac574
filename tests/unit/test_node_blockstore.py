"""Blocks survive restarts and crashes: reload, torn-tail recovery, refusal of real corruption."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from embit import ec, script
from embit.networks import NETWORKS
from structlog.testing import capture_logs

from bitcoin_supervisor.roles.node import BlockStoreError, NodeChain
from bitcoin_supervisor.roles.node._blockstore import BLOCK_FILE
from bitcoin_supervisor.roles.node._consensus import address_to_script

ADDRESS = script.p2wpkh(ec.PrivateKey(bytes.fromhex("22" * 32)).get_public_key()).address(
    NETWORKS["regtest"])


def _mine(blocks_dir: Path, count: int) -> list[str]:
    async def scenario() -> list[str]:
        chain = NodeChain.open(blocks_dir)
        hashes = await chain.generate_to_address(count, address_to_script(ADDRESS))
        chain.close()
        return hashes
    return asyncio.run(scenario())


def _tip(blocks_dir: Path) -> tuple[int, str]:
    chain = NodeChain.open(blocks_dir)
    tip = asyncio.run(chain.get_tip())
    chain.close()
    return tip.height, tip.hash


def test_blocks_survive_a_reopen(tmp_path: Path) -> None:
    blocks = tmp_path / "blocks"
    hashes = _mine(blocks, 20)
    assert _tip(blocks) == (20, hashes[-1])
    more = _mine(blocks, 5)  # appending after a reload extends the same chain
    assert _tip(blocks) == (25, more[-1])
    assert (blocks / BLOCK_FILE).read_bytes()[:4] == bytes.fromhex("fabfb5da")


def test_reloading_thousands_of_blocks_is_fast(tmp_path: Path) -> None:
    blocks = tmp_path / "blocks"
    _mine(blocks, 3000)
    started = time.perf_counter()
    height, _ = _tip(blocks)
    elapsed = time.perf_counter() - started
    print(f"reloaded and re-validated {height + 1} blocks in {elapsed * 1000:.0f} ms")
    assert height == 3000 and elapsed < 5.0


@pytest.mark.parametrize("tail", [
    b"\xfa\xbf",  # a record header cut short
    bytes.fromhex("fabfb5da") + (300).to_bytes(4, "little") + b"\x01" * 100,  # half a block
    os.urandom(1000),  # garbage
])
def test_a_torn_tail_is_cut_away_and_acknowledged_blocks_stay(tmp_path: Path,
                                                              tail: bytes) -> None:
    blocks = tmp_path / "blocks"
    hashes = _mine(blocks, 10)
    size = (blocks / BLOCK_FILE).stat().st_size
    with open(blocks / BLOCK_FILE, "ab") as f:
        f.write(tail)
    with capture_logs() as logs:
        assert _tip(blocks) == (10, hashes[-1])
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["blockstore.truncated"]
    assert (blocks / BLOCK_FILE).stat().st_size == size
    assert _mine(blocks, 1)  # and the chain grows on from there


def test_a_half_written_last_block_is_dropped(tmp_path: Path) -> None:
    blocks = tmp_path / "blocks"
    hashes = _mine(blocks, 10)
    path = blocks / BLOCK_FILE
    os.truncate(path, path.stat().st_size - 40)
    assert _tip(blocks) == (9, hashes[-2])


def test_damage_before_valid_blocks_is_refused_not_truncated(tmp_path: Path) -> None:
    blocks = tmp_path / "blocks"
    _mine(blocks, 10)
    path = blocks / BLOCK_FILE
    data = bytearray(path.read_bytes())
    data[400] ^= 0xFF  # inside block 1: blocks 2..10 after it are still valid
    path.write_bytes(bytes(data))
    with pytest.raises(BlockStoreError, match="corrupt"):
        NodeChain.open(blocks)
    assert path.stat().st_size == len(data)


def test_a_second_node_on_the_same_datadir_is_refused(tmp_path: Path) -> None:
    chain = NodeChain.open(tmp_path / "blocks")
    try:
        with pytest.raises(BlockStoreError, match="in use"):
            NodeChain.open(tmp_path / "blocks")
    finally:
        chain.close()
