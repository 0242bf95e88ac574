"""The shipped unit with this checkout's paths, and a real systemd to run it under."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ._boot import INNER_STATE, BootedSystemd, booted_systemd

REPO = Path(__file__).resolve().parents[2]
UNIT_NAME = "bitcoin-supervisor.service"
UNIT_FILE = REPO / "systemd" / UNIT_NAME
# The unprivileged unit: a dynamic user, no capabilities, a delegated cgroup.
USER_UNIT_NAME = "bitcoin-supervisor-unprivileged.service"
SHIPPED_UNITS = (UNIT_NAME, USER_UNIT_NAME)
VENV = REPO / ".venv"
# The template paths of the shipped unit (systemd/README.md).
TEMPLATE_VENV = "/opt/bitcoin-supervisor/.venv"
TEMPLATE_CONFIG = "/etc/bitcoin-supervisor/multiprocess.toml"
STATE_DIR = "/var/lib/bitcoin-supervisor"
STATE_DIRS = {UNIT_NAME: STATE_DIR, USER_UNIT_NAME: "/var/lib/bitcoin-supervisor-unprivileged"}
COMPONENTS = {"node", "wallet", "index"}


def unit_text(config: str, name: str = UNIT_NAME) -> str:
    """The shipped unit ``name`` with the repository's venv and ``config`` substituted."""
    path = REPO / "systemd" / name
    text = path.read_text()
    for template in (TEMPLATE_VENV, TEMPLATE_CONFIG):
        assert template in text, f"{path} no longer names the template path {template}"
    return text.replace(TEMPLATE_VENV, str(VENV)).replace(TEMPLATE_CONFIG, config)


def checkout_dropin() -> str | None:
    """The drop-in that shows this checkout to the hardened unit where it sits out of its
    sight (a home directory: ProtectHome=; /tmp or /var/tmp: PrivateTmp=), read-only,
    standing in for an installation under /opt; None where the unit sees it anyway."""
    homes = [Path(p) for p in ("/root", "/home", "/run/user")]
    temps = [Path(p) for p in ("/tmp", "/var/tmp")]
    in_home = any(REPO.is_relative_to(p) for p in homes)
    if not in_home and not any(REPO.is_relative_to(p) for p in temps):
        return None
    return ("[Service]\n" + ("ProtectHome=tmpfs\n" if in_home else "")
            + f"BindReadOnlyPaths={REPO}\n")


def free_port() -> int:
    """A TCP port free on the host now (the booted systemd shares no network with it,
    but its own loopback starts empty, so any free port is free there too)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Return ``check()``'s first truthy value; AssertionError after ``timeout`` s.

    Polls: systemd announces an automatic restart only as D-Bus property changes, and
    this harness has no bus client to await them with.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Service:
    """The unit under test inside a booted systemd, with helpers to observe it."""

    systemd: BootedSystemd
    config: Path  # on the host; the unit reads it at systemd.inner(config)
    unit: str = UNIT_NAME

    @property
    def state_dir(self) -> str:
        """The unit's StateDirectory= as its services see it (the daemon's --datadir)."""
        return STATE_DIRS[self.unit]

    def show(self, *props: str) -> dict[str, str]:
        """Unit properties (``systemctl show``), timestamps in µs UTC."""
        out = self.systemd.systemctl("show", "--timestamp=us+utc", "-p", ",".join(props),
                                     self.unit)
        return dict(line.split("=", 1) for line in out.splitlines())

    def status(self) -> dict[str, Any]:
        """The daemon's ``status --json`` over its control socket, run inside as root."""
        out = self.systemd.run(str(VENV / "bin" / "bitcoin-supervisor"), "status",
                               "--datadir", self.state_dir, "--json").stdout
        return dict(json.loads(out))

    def running_pids(self) -> dict[str, int]:
        """Pid (as the daemon sees it) of every component the daemon reports running."""
        return {c["name"]: c["pid"] for c in self.status()["components"]
                if c["state"] == "active" and c["substate"] == "running"}

    def cgroup(self) -> Path:
        """Host path of the unit's cgroup (cgroup v2)."""
        return self.systemd.cgroup / "system.slice" / self.unit

    def log_events(self) -> list[dict[str, Any]]:
        """The daemon's JSON log lines from the journal, oldest first."""
        self.systemd.run("journalctl", "--sync")
        out = self.systemd.run("journalctl", "-u", self.unit, "-o", "cat", "--no-pager").stdout
        events = []
        for line in out.splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        return events

    def journal(self) -> str:
        """Everything the journal holds about the unit (for failure messages)."""
        return self.systemd.run("journalctl", "-u", self.unit, "-o", "cat", "--no-pager",
                                check=False).stdout

    def start(self) -> float:
        """``systemctl start`` the unit; returns how long it took. AssertionError (with
        the journal) when it fails."""
        began = time.monotonic()
        result = self.systemd.run("systemctl", "start", self.unit, check=False, timeout=150)
        took = time.monotonic() - began
        assert result.returncode == 0, (f"systemctl start {self.unit} failed:\n"
                                        f"{result.stderr}\n{self.journal()}")
        print(f"systemctl start {self.unit} returned after {took:.2f}s")
        return took


def parse_show_time(value: str) -> datetime:
    """Parse a ``--timestamp=us+utc`` value such as ``Tue 2026-11-24 16:11:59.315262 UTC``."""
    return datetime.strptime(value, "%a %Y-%m-%d %H:%M:%S.%f %Z").replace(tzinfo=UTC)


def parse_log_time(value: str) -> datetime:
    """Parse the daemon's ISO-8601 UTC log timestamp."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def bundled_config(path: Path, datadir: str) -> None:
    """Write the bundled config to ``path`` with a free RPC port and ``datadir``."""
    text = (REPO / "multiprocess.toml").read_text()
    text, n = re.subn(r"(?m)^rpcport\s*=\s*\d+", f"rpcport = {free_port()}", text)
    assert n == 1, "bundled config has no rpcport line to override"
    text, n = re.subn(r'(?m)^datadir\s*=\s*"[^"]*"', f'datadir = "{datadir}"', text)
    assert n == 1, "bundled config has no [supervisor] datadir line to override"
    path.write_text(text)


@contextlib.contextmanager
def installed(tmp_path: Path, unit: str) -> Iterator[Service]:
    """A freshly booted systemd with the shipped ``unit`` installed (not started),
    pointing at this checkout's venv and a config with a free RPC port and the
    StateDirectory as its datadir. systemd is powered off afterwards, also on errors."""
    state = tmp_path / "systemd"
    with booted_systemd(state) as systemd:
        config = state / "multiprocess.toml"
        bundled_config(config, STATE_DIRS[unit])
        dropin = systemd.units / f"{unit}.d"
        if systemd.v1_controllers and unit == UNIT_NAME:
            # This harness (not a real host) mounts the host's v1 memory/pids hierarchies
            # outside /sys/fs/cgroup, so the unit's ReadWritePaths= cannot name them.
            dropin.mkdir(exist_ok=True)
            (dropin / "cgroup-v1.conf").write_text(
                f"[Service]\nReadWritePaths={INNER_STATE}/cgroup-v1\n")
        if (shown := checkout_dropin()) is not None:
            dropin.mkdir(exist_ok=True)
            (dropin / "checkout.conf").write_text(shown)
        systemd.install(unit, unit_text(systemd.inner(config), unit))
        yield Service(systemd, config, unit)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    """The root unit, installed in a freshly booted systemd (see ``installed``)."""
    with installed(tmp_path, UNIT_NAME) as service:
        yield service


@pytest.fixture
def unprivileged(tmp_path: Path) -> Iterator[Service]:
    """The unprivileged unit, installed in a freshly booted systemd (see ``installed``)."""
    with installed(tmp_path, USER_UNIT_NAME) as service:
        yield service


@pytest.fixture(params=SHIPPED_UNITS)
def unit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    """Each shipped unit in turn (root, then unprivileged), as ``installed`` gives it."""
    with installed(tmp_path, request.param) as service:
        yield service
