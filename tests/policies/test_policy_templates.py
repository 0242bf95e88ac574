"""Policies name datadirs by component: a component's settings resolve to the view of
that component, whatever it is called and whichever provider it is bound to."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitcoin_supervisor.interfaces import ComponentSettings, PolicyError
from bitcoin_supervisor.sandbox import load_policy, policy_for

DATADIRS = {"node-a": "/srv/node-a", "node-b": "/srv/node-b", "index-b": "/srv/index-b",
            "calc": "/srv/calc"}


def test_settings_travel_with_their_graph() -> None:
    settings = ComponentSettings(name="index-b", role="index", datadir="/srv/index-b",
                                 sandbox="index", datadirs=DATADIRS,
                                 providers={"chain": "node-b"})
    assert ComponentSettings.from_env(settings.to_env()) == settings
    foreign = ComponentSettings(name="calc", role=None, datadir="/srv/calc", sandbox="wallet")
    assert ComponentSettings.from_env(foreign.to_env()) == foreign


def test_index_policy_follows_its_own_chain_provider() -> None:
    settings = ComponentSettings(name="index-b", role="index", datadir="/srv/index-b",
                                 sandbox="index", datadirs=DATADIRS,
                                 providers={"chain": "node-b"})
    policy = policy_for(settings)
    assert policy is not None
    assert Path("/srv/node-b/blocks") in policy.filesystem.read_only
    assert policy.filesystem.read_write == (Path("/srv/index-b"),)
    shown = policy.filesystem.read_only + policy.filesystem.read_write
    assert not any(p.is_relative_to("/srv/node-a") or p.is_relative_to("/srv/calc")
                   for p in shown)


def test_a_program_without_a_role_gets_only_its_own_datadir() -> None:
    settings = ComponentSettings(name="calc", role=None, datadir="/srv/calc",
                                 sandbox="wallet", datadirs=DATADIRS)
    policy = policy_for(settings)
    assert policy is not None
    assert policy.filesystem.read_write == (Path("/srv/calc"),)
    assert not any(str(p).startswith("/srv/") for p in policy.filesystem.read_only)


def test_policy_naming_a_bad_component_is_refused(tmp_path: Path) -> None:
    policies = Path(__file__).resolve().parents[2] / "policies"
    for name in ("syscalls.toml", "wallet.toml"):
        (tmp_path / name).write_text((policies / name).read_text())
    text = (tmp_path / "wallet.toml").read_text()
    (tmp_path / "wallet.toml").write_text(text.replace('"{datadir}"]', '"{datadir:../x}"]', 1))
    with pytest.raises(PolicyError, match=r"bad component name '\.\./x'"):
        load_policy("wallet", datadirs={"wallet": Path("/srv/w")}, policy_dir=tmp_path)
