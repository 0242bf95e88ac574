"""A real daemon under hostile control-socket clients (silent, garbage, a flood that never
reads, a connection storm), all from a member of its control group, keeps answering the
operator's CLI and keeps brokering calls."""

from __future__ import annotations

import grp
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import System, free_port, launch, stop_system, write_config

# Run as nobody with the control group: every kind of hostile client at once, then it
# reports what the daemon answered and holds everything open until stdin closes.
_ATTACKER = """
import json, socket, sys
def connect():
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    return s
silent = [connect() for _ in range(4)]
garbage = connect()
garbage.sendall(bytes(range(256)) * 200)  # malformed lines, then a tail with no newline
flood = connect()
flood.setblocking(False)
try:  # requests until its socket buffer is full; it never reads a reply
    while True:
        flood.send(b'{"verb": "status"}\\n' * 1000)
except BlockingIOError:
    pass
storm = [connect() for _ in range(40)]  # beyond the per-uid limit
busy = [s.recv(4096).decode() for s in storm[-10:]]
print(json.dumps({"busy": busy, "garbage": garbage.recv(200).decode(errors="replace")}),
      flush=True)
sys.stdin.read()
"""


@pytest.fixture
def group_system() -> Iterator[System]:
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="control-group-"))
    os.chmod(base, 0o711)  # nobody must reach the socket for the daemon's checks to matter
    config = write_config(base, free_port())
    config.write_text(config.read_text().replace(
        "[supervisor]\n", '[supervisor]\ncontrol_group = "users"\n', 1))
    system = launch(config)
    try:
        system.log.wait_for(lambda e: e.get("event") == "supervisor.ready")
        yield system
    finally:
        stop_system(system)
        shutil.rmtree(base)


def test_hostile_group_member_stalls_neither_daemon_nor_operator(group_system: System
                                                                  ) -> None:
    system = group_system
    users = grp.getgrnam("users").gr_gid
    attacker = subprocess.Popen(
        ["/usr/bin/python3", "-c", _ATTACKER, str(system.datadir / "supervisor.sock")],
        user=65534, group=65534, extra_groups=[users], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True)
    try:
        assert attacker.stdout is not None
        seen = json.loads(attacker.stdout.readline())
        assert all('"code":503' in b for b in seen["busy"]), seen
        assert '"code":400' in seen["garbage"], seen
        # The operator (root) is served while all of that is open.
        started = time.monotonic()
        assert {c["state"] for c in system.status()["components"]} == {"active"}
        status_s = time.monotonic() - started
        assert system.rpc("createwallet", "w")  # node -> supervisor -> wallet
        assert system.rpc("getwalletinfo", wallet="w")
        assert status_s < 5, status_s
    finally:
        attacker.communicate(timeout=30)
    first = system.log.wait_for(lambda e: e.get("event") == "control.busy")
    assert first["uid"] == 65534 and first["limit"] == 16
    system.log.wait_drain()
    busy = [e for e in system.log.events if e.get("event") == "control.busy"]
    assert len(busy) == 1, busy  # one log line for the whole storm (30 refusals)


def test_unknown_control_group_is_a_config_error(tmp_path: Path) -> None:
    from bitcoin_supervisor.interfaces import ConfigError
    from bitcoin_supervisor.supervisor import load_config

    config = tmp_path / "c.toml"
    config.write_text('[supervisor]\ncontrol_group = "no-such-group-x"\n[components.node]\n')
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert str(err.value).startswith(f"{config}:2:17: unknown group 'no-such-group-x' in "
                                     "[supervisor] control_group"), str(err.value)
