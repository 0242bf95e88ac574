"""plan_reload: what a reload does to each component, decided before anything moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitcoin_supervisor.interfaces import ConfigError
from bitcoin_supervisor.supervisor._config import Config, load_config
from bitcoin_supervisor.supervisor._reload import plan_reload

BASE = """
[supervisor]
datadir = "{datadir}"
[components.node]
role = "node"
[components.wallet]
role = "wallet"
[components.index]
role = "index"
"""


def _load(tmp_path: Path, name: str, text: str, datadir: str = "data") -> Config:
    path = tmp_path / name
    path.write_text(BASE.format(datadir=tmp_path / datadir) + text)
    return load_config(path)


def test_untouched_components_are_unchanged(tmp_path: Path) -> None:
    old, new = _load(tmp_path, "a.toml", ""), _load(tmp_path, "b.toml", "")
    plan = plan_reload(old, new)
    assert plan.empty and plan.unchanged == ("node", "wallet", "index")


def test_added_removed_and_changed_are_told_apart(tmp_path: Path) -> None:
    old = _load(tmp_path, "a.toml", "")
    new = _load(tmp_path, "b.toml", '[components.index2]\nrole = "index"\nrpc_methods = []\n'
                '[components.wallet.restart]\npolicy = "always"\n')
    plan = plan_reload(old, new)
    assert (plan.added, plan.removed, plan.changed, plan.unchanged) == (
        ("index2",), (), ("wallet",), ("node", "index"))
    assert plan_reload(new, old).removed == ("index2",)


def test_a_moved_provider_datadir_changes_its_consumers(tmp_path: Path) -> None:
    old = _load(tmp_path, "a.toml", "")
    text = (tmp_path / "a.toml").read_text().replace(
        '[components.node]\nrole = "node"\n',
        f'[components.node]\nrole = "node"\ndatadir = "{tmp_path / "elsewhere"}"\n')
    (tmp_path / "c.toml").write_text(text)
    new = load_config(tmp_path / "c.toml")
    assert plan_reload(old, new).changed == ("node", "wallet", "index")


def test_what_a_reload_cannot_apply_is_refused(tmp_path: Path) -> None:
    old = _load(tmp_path, "a.toml", "")
    with pytest.raises(ConfigError, match=r"b\.toml: \[supervisor\] datadir changed .*"
                                          r"restart the daemon"):
        plan_reload(old, _load(tmp_path, "b.toml", "", datadir="other"))
