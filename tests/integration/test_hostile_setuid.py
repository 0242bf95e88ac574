"""A compromised component cannot plant a setuid or setgid file in its datadir (which sits
on the host's filesystem, not nosuid there): creating one by open is a seccomp kill, as
chmod with those bits already was."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from ._peers import write_program
from .conftest import launch, own_config, stop_system

_PLANTER = """#!{python}
import os
os.close(os.open("plain", os.O_CREAT | os.O_WRONLY, 0o644))
os.close(os.open("planted", os.O_CREAT | os.O_WRONLY, {mode:#o}))
"""


@pytest.mark.parametrize("mode", [0o4755, 0o2755])
def test_open_with_setuid_bits_kills_the_component(tmp_path: Path, mode: int) -> None:
    program = write_program(tmp_path, "planter", _PLANTER.format(python=sys.executable, mode=mode))
    config = own_config(tmp_path, f"""
[components.planter]
argv = ["{program}", "{{fd}}"]
sandbox = "wallet"
restart = "no"
""")
    system = launch(config)
    try:
        exited = system.log.wait_for(lambda e: e.get("event") == "component.exited")
        assert exited["signal"] == signal.Signals.SIGSYS.name, exited
        datadir = tmp_path / "data" / "planter"
        assert (datadir / "plain").is_file()  # it could write: only the mode bits killed it
        assert not (datadir / "planted").exists()
    finally:
        stop_system(system)
