"""The role scripts the supervisor forks from templates are exactly those pyproject.toml
installs (the daemon knows them without reading package metadata at run time)."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from pathlib import Path

from bitcoin_supervisor.supervisor._forkserver import ROLE_SCRIPTS, role_entry


def test_role_scripts_match_the_installed_console_scripts() -> None:
    installed = {ep.name: ep.value for ep in entry_points(group="console_scripts")
                 if ep.value.startswith("bitcoin_supervisor.roles.")}
    assert installed == ROLE_SCRIPTS


def test_only_our_role_scripts_beside_this_interpreter_have_an_entry() -> None:
    bindir = Path(sys.executable).parent
    assert role_entry(bindir / "bitcoin-supervisor-wallet") == \
        "bitcoin_supervisor.roles.wallet:main"
    assert role_entry(Path("/usr/bin/bitcoin-supervisor-wallet")) is None
    assert role_entry(bindir / "bitcoin-supervisor") is None
    assert role_entry(bindir / "python3") is None
