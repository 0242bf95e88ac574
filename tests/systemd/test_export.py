"""`bitcoin-supervisor export systemd`: one unit per component, its policy as directives,
and systemd's own verifier finds nothing to say about them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .conftest import REPO, VENV


def _export(tmp_path: Path) -> dict[str, str]:
    out = subprocess.run([str(VENV / "bin" / "bitcoin-supervisor"), "export", "systemd",
                          "--config", str(REPO / "multiprocess.toml"), "--dir",
                          str(tmp_path)], capture_output=True, text=True, timeout=60,
                         check=True)
    written = [Path(line) for line in out.stdout.splitlines()]
    return {p.name: p.read_text() for p in written}


def _directives(text: str) -> set[str]:
    return {line for line in text.splitlines() if line and not line.startswith("#")}


def test_each_component_gets_a_socket_activated_unit_that_verifies_clean(
        tmp_path: Path) -> None:
    units = _export(tmp_path)
    assert set(units) == {f"bitcoin-supervisor-{n}{s}" for n in ("node", "wallet", "index")
                          for s in ("@.service", ".socket")}
    result = subprocess.run(["systemd-analyze", "verify", *sorted(units)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "")


def test_the_units_carry_each_role_policy(tmp_path: Path) -> None:
    units = _export(tmp_path)
    wallet = _directives(units["bitcoin-supervisor-wallet@.service"])
    node = _directives(units["bitcoin-supervisor-node@.service"])
    # wallet: no network, its datadir only, its limits, its syscalls (no connect/bind).
    assert {"PrivateNetwork=yes", "IPAddressDeny=any", "RestrictAddressFamilies=AF_UNIX",
            "MemoryMax=536870912", "TasksMax=128", "CapabilityBoundingSet=",
            "NoNewPrivileges=yes", "PrivateUsers=yes", "LimitCORE=0"} <= wallet
    assert f"ReadWritePaths={REPO}/.bitcoin-supervisor/wallet" in wallet
    filters = [d for d in wallet if d.startswith("SystemCallFilter=")]
    assert len(filters) == 1
    allowed = set(filters[0].removeprefix("SystemCallFilter=").split())
    assert {"read", "write", "futex"} <= allowed and not {"connect", "bind", "ptrace",
                                                         "mount", "bpf"} & allowed
    # node: the host's network, bind only to its ports.
    assert "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" in node
    assert "PrivateNetwork=yes" not in node
    assert {"SocketBindDeny=any", "SocketBindAllow=tcp:18443"} <= node
    assert any(d.startswith("ExecStart=") and d.endswith("-ipcfd 3") for d in node)
    socket = _directives(units["bitcoin-supervisor-wallet.socket"])
    assert "Accept=yes" in socket
    # What systemd cannot express is said in the unit, not dropped silently.
    assert "# not expressible: Landlock" in units["bitcoin-supervisor-wallet@.service"]
