"""Real daemons on temporary datadirs and free ports, driven through the real CLI."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CLI = str(BIN / "bitcoin-supervisor")
GENESIS = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LogWatcher:
    """Reads the daemon's JSON log lines on a thread; tests wait for events, not time."""

    stream: Any
    events: list[dict[str, Any]] = field(default_factory=list)
    _queue: queue.Queue[dict[str, Any] | None] = field(default_factory=queue.Queue)
    raw: list[str] = field(default_factory=list)

    def start(self) -> None:
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.stream:
            self.raw.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self._queue.put(event)
        self._queue.put(None)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0
                 ) -> dict[str, Any]:
        """Return the first event (seen before or now) matching ``predicate``."""
        for event in self.events:
            if predicate(event):
                return event
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("timed out waiting for a log event; last lines:\n"
                                     + "".join(self.raw[-30:]))
            try:
                event = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if event is None:
                raise AssertionError("daemon exited; last lines:\n" + "".join(self.raw[-30:]))
            self.events.append(event)
            if predicate(event):
                return event

    def mark(self) -> int:
        """Forget events seen so far for later waits (returns how many were seen)."""
        self.wait_drain()
        seen = len(self.events)
        self.events.clear()
        return seen

    def wait_drain(self) -> None:
        while True:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                return
            if event is not None:
                self.events.append(event)


@dataclass
class System:
    """A running daemon and helpers to drive it through the CLI."""

    config: Path
    datadir: Path
    rpcport: int
    process: subprocess.Popen[str]
    log: LogWatcher

    def cli(self, *args: str, check: bool = True, timeout: float = 120.0
            ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([CLI, *args[:1], "--config", str(self.config), *args[1:]],
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"bitcoin-supervisor {' '.join(args)} exited "
                                 f"{result.returncode}: {result.stderr}")
        return result

    def rpc(self, *args: str, wallet: str | None = None) -> str:
        extra = ["--wallet", wallet] if wallet else []
        return self.cli("rpc", *extra, *args).stdout.strip()

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.cli("status", "--json").stdout))

    def component(self, name: str) -> dict[str, Any]:
        for comp in self.status()["components"]:
            if comp["name"] == name:
                return dict(comp)
        raise KeyError(name)

    def pids(self) -> dict[str, int]:
        return {c["name"]: c["pid"] for c in self.status()["components"]}

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait for ``supervisor.ready``; AssertionError (with the log) if a component
        fails first."""
        first = self.log.wait_for(
            lambda e: e.get("event") == "supervisor.ready"
            or (e.get("event") == "component.state_changed" and e.get("new") == "failed"),
            timeout=timeout)
        if first["event"] != "supervisor.ready":
            raise AssertionError(f"component failed to start: {first}\n"
                                 + "".join(self.log.raw))

    def wait_running(self, name: str, *, not_pid: int | None = None, timeout: float = 60) -> None:
        def running(event: dict[str, Any]) -> bool:
            return (event.get("event") == "component.state_changed"
                    and event.get("component") == name and event.get("new") == "running")
        self.log.wait_for(running, timeout)
        if not_pid is not None:
            assert self.component(name)["pid"] != not_pid


def write_config(tmp_path: Path, rpcport: int, *, standby: bool = True) -> Path:
    """The bundled multiprocess.toml with this test's datadir and a free RPC port; with
    ``standby`` false, without its warm standbys (tests of the start path itself)."""
    text = (REPO / "multiprocess.toml").read_text()
    if not standby:
        text, n = re.subn(r"(?m)^standby = true", "standby = false", text)
        assert n, "bundled config has no standby line to override"
    text, n = re.subn(r"(?m)^rpcport\s*=\s*\d+", f"rpcport = {rpcport}", text)
    assert n == 1, "bundled config has no rpcport line to override"
    text, n = re.subn(r'(?m)^datadir\s*=\s*"[^"]*"', f'datadir = "{tmp_path / "data"}"', text)
    assert n == 1, "bundled config has no [supervisor] datadir line to override"
    path = tmp_path / "multiprocess.toml"
    path.write_text(text)
    return path


def launch(config: Path, *extra: str, uid: int | None = None,
           env: dict[str, str] | None = None, rpcport: int = 0,
           cli: Sequence[str] = (CLI,)) -> System:
    """Start a daemon on ``config`` without waiting for it; its JSON log is watched.
    With ``uid``, the daemon runs as that unprivileged user; ``cli`` is the command that
    runs the CLI (another way in to the same ``main``)."""
    prefix = [] if uid is None else ["setpriv", f"--reuid={uid}", f"--regid={uid}",
                                     "--clear-groups", "--"]
    proc = subprocess.Popen([*prefix, *cli, "start", "--config", str(config), "--log-format",
                             "json", *extra], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=env)
    watcher = LogWatcher(proc.stderr)
    watcher.start()
    return System(config, config.parent / "data", rpcport, proc, watcher)


def own_config(tmp_path: Path, body: str) -> Path:
    """A config of a test's own: its datadir under ``tmp_path`` plus ``body``
    (component tables)."""
    config = tmp_path / "own.toml"
    config.write_text(f'[supervisor]\ndatadir = "{tmp_path / "data"}"\n{body}')
    return config


def start_system(tmp_path: Path, *extra: str, uid: int | None = None,
                 standby: bool = True) -> System:
    """Start the bundled config and wait until every component runs; with ``uid``, the
    daemon runs as that unprivileged user (``tmp_path`` must be reachable by it)."""
    port = free_port()
    system = launch(write_config(tmp_path, port, standby=standby), *extra, uid=uid,
                    rpcport=port)
    try:
        system.wait_ready()
    except BaseException:
        stop_system(system)
        raise
    return system


def index_override_config(tmp_path: Path, argv: list[str], start_limit_burst: int) -> Path:
    """A node plus an index started by ``argv`` that restarts fast up to a start limit."""
    config = tmp_path / "override.toml"
    config.write_text(f"""
[supervisor]
datadir = "{tmp_path / 'data'}"
[components.node]
rpcport = {free_port()}
[components.index]
argv = {json.dumps(argv)}
[components.index.restart]
policy = "on-failure"
backoff_initial_s = 0.05
backoff_max_s = 0.2
start_limit_burst = {start_limit_burst}
start_limit_interval_s = 30
""")
    return config


def stop_system(system: System) -> None:
    if system.process.poll() is None:
        system.process.send_signal(signal.SIGTERM)
        try:
            system.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(system.process.pid, signal.SIGKILL)
            system.process.wait()
    _unmount_left(system)


def _unmount_left(system: System) -> None:
    """A daemon that was SIGKILLed leaves its datadirs' disk images mounted (the next
    start would reuse them): unmount what it left, so no test leaks loop devices. One
    that shut down cleanly (exit 0) must have unmounted everything itself; one that
    refused to start (another daemon owns the datadir) leaves the owner's alone."""
    code = system.process.returncode
    if code is None or code > 0:
        return
    left = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            point = line.split()[4]
            if point.startswith(f"{system.datadir}/"):
                left.append(point)
    for point in reversed(left):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    assert code != 0 or not left, f"left mounted after a clean shutdown: {left}"


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    running = start_system(tmp_path)
    try:
        yield running
    finally:
        stop_system(running)
