"""`start` with components that refuse to boot (issue 12): when every one is refused the
daemon exits at once with the reason in one line; when only some are, it keeps running
the others and status says why for each refused one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ._peers import write_program
from .conftest import CLI, free_port, launch, own_config, stop_system

# What a role does with settings it can never work with: say why, exit EX_CONFIG (78).
_REFUSER = f"""#!{sys.executable}
import sys
print("cannot read /srv/chain/blocks: Permission denied", file=sys.stderr, flush=True)
sys.exit(78)
"""


def _refuser(tmp_path: Path, name: str) -> str:
    return f"""
[components.{name}]
argv = ["{write_program(tmp_path, 'refuser', _REFUSER)}", "{{fd}}"]
sandbox = "none"
"""


def test_start_fails_fast_with_the_reason_when_every_component_is_refused(
        tmp_path: Path) -> None:
    config = own_config(tmp_path, _refuser(tmp_path, "feeder") + """
[components.reader]
argv = ["/bin/cat", "{fd}"]
sandbox = "none"
depends_on = ["feeder"]
""")
    # Generous: the daemon stops by itself once both have failed, on any machine load.
    started = subprocess.run([CLI, "start", "--config", str(config), "--log-format", "json"],
                             capture_output=True, text=True, timeout=240)
    assert started.returncode == 1, started.stderr
    last = started.stderr.strip().splitlines()[-1]
    # The component's own words, not the supervisor's view of the link.
    assert last == ("bitcoin-supervisor: cannot start, every component was refused: "
                    "feeder boot-refused: cannot read /srv/chain/blocks: Permission denied; "
                    "reader needs feeder"), last
    # It stopped like any daemon: control socket gone, nothing answers.
    assert not (tmp_path / "data" / "supervisor.sock").exists()
    gone = subprocess.run([CLI, "status", "--config", str(config)], capture_output=True,
                          text=True, timeout=120)
    assert gone.returncode == 3, gone.stderr


def test_some_refused_keeps_the_others_running_and_status_says_why(tmp_path: Path) -> None:
    port = free_port()
    config = own_config(tmp_path, f"""
[components.node]
rpcport = {port}
""" + _refuser(tmp_path, "feeder"))
    system = launch(config, rpcport=port)
    try:
        system.wait_running("node")
        system.log.wait_for(lambda e: e.get("event") == "component.state_changed"
                            and e.get("component") == "feeder" and e.get("new") == "failed")
        feeder = system.component("feeder")  # the daemon still answers ...
        assert (feeder["state"], feeder["last_exit"]["reason"]) == ("failed", "boot-refused")
        assert feeder["last_exit"]["detail"] == "cannot read /srv/chain/blocks: Permission denied"
        assert system.component("node")["state"] == "active"
        human = system.cli("status").stdout
        assert "code 78 (boot-refused)" in human and "cannot read /srv/chain/blocks" in human
        assert system.process.poll() is None  # ... and keeps running
        assert not any(e.get("event") == "supervisor.start_refused" for e in system.log.events)
    finally:
        stop_system(system)
    assert system.process.returncode == 0
