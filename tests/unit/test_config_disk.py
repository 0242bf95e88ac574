"""Disk budgets in the config: role defaults, sizes, "none", and one located message per
mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config import error_of, write

from bitcoin_supervisor.interfaces import DiskBudget
from bitcoin_supervisor.supervisor._config import load_config
from bitcoin_supervisor.supervisor._configdisk import DISK_DEFAULTS, parse_size


def test_roles_get_their_default_budget_and_foreign_programs_none(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
        [components.node]
        [components.wallet]
        [components.index]
        [components.calc]
        argv = ["/bin/true", "{fd}"]
        sandbox = "wallet"
        """))
    for role in ("node", "wallet", "index"):
        assert config.component(role).disk == DISK_DEFAULTS[role]
    assert config.component("wallet").disk == DiskBudget(1 << 30, 20_000)
    assert config.component("calc").disk is None
    assert config.images_dir == config.datadir / "images"


def test_sizes_none_and_inodes(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
        [components.node]
        disk_budget = "none"
        [components.wallet]
        disk_budget = "512M"
        inode_budget = 1000
        [components.index]
        disk_budget = 33554432
        """))
    assert config.component("node").disk is None
    assert config.component("wallet").disk == DiskBudget(512 << 20, 1000)
    assert config.component("index").disk == DiskBudget(32 << 20, DISK_DEFAULTS["index"].inodes)


@pytest.mark.parametrize(("text", "size"), [("2G", 2 << 30), ("1.5GiB", 3 << 29),
                                            ("4096", 4096), ("16 M", 16 << 20),
                                            ("1t", 1 << 40), ("2X", None), ("", None),
                                            ("-1G", None)])
def test_parse_size(text: str, size: int | None) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("body", "message"), [
    ('disk_budget = "lots"', "3:15: disk_budget 'lots' in [components.wallet] is not a "
     'size (hint: write bytes or a number with K, M, G or T, e.g. "2G", or "none" for no '
     "budget)"),
    ('disk_budget = "1M"', "3:15: disk_budget '1M' in [components.wallet] is out of range "
     "(hint: use between 16M and 1024T)"),
    ("disk_budget = true", '3:15: disk_budget in [components.wallet] must be a size such '
     'as "2G" or "none", not boolean'),
    ("inode_budget = 10", "3:16: inode_budget 10 in [components.wallet] is out of range "
     "(hint: use between 64 and 2147483648)"),
    ('disk_budget = "none"\ninode_budget = 100', "4:1: inode_budget in [components.wallet] "
     'needs a disk_budget, not "none" (hint: remove inode_budget or set a disk_budget)'),
])
def test_bad_budgets_are_located(tmp_path: Path, body: str, message: str) -> None:
    assert error_of(tmp_path, f"[components.node]\n[components.wallet]\n{body}\n") == message


def test_a_datadir_on_the_images_directory_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, f"""
        [supervisor]
        datadir = "{tmp_path / 'data'}"
        [components.node]
        datadir = "{tmp_path / 'data' / 'images'}"
        """)
    assert "overlaps" in message and "where the disk images live" in message, message
