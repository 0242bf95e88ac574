"""Child processes for the benchmarks: real role executables and the minimal probe child,
spawned through the project's own ``Spawner`` and drained so no pipe ever fills."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitcoin_supervisor.interfaces import ComponentSettings, IpcError
from bitcoin_supervisor.ipc import ChildProcess, Connection, PopenSpawner, Protocol, Spawner
from bitcoin_supervisor.sandbox import PARENT_PID_ENV

PROBE_SCRIPT = Path(__file__).resolve().parent / "_probe.py"
PROBE_CALLS_ENV = "BENCH_PROBE_CALLS"
ROLES = ("node", "wallet", "index")
FLOOR_LABEL = "python child serving Echo (capnp only)"
STOP_TIMEOUT_S = 10.0
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "HOME")


@dataclass(frozen=True)
class SpawnVariant:
    """One way of bringing a component up, measured side by side with the others.

    ``spawner`` makes the Spawner (cold Popen today; a fork server later) and
    ``sandboxed`` applies the role's own policy (``policies/<role>.toml``). Add a variant
    to ``VARIANTS`` and every benchmark that compares variants measures it too; the
    daemon benchmarks use only ``sandboxed`` (the daemon picks its own spawner).
    """

    name: str
    spawner: Callable[[], Spawner]
    sandboxed: bool

    def sandbox(self, role: str) -> str | None:
        """The policy name a component of ``role`` runs under; None: unsandboxed."""
        return role if self.sandboxed else None

    def config_value(self, role: str) -> str:
        """The component's ``sandbox`` value in a config file."""
        return self.sandbox(role) or "none"


VARIANTS: tuple[SpawnVariant, ...] = (
    SpawnVariant("unsandboxed", PopenSpawner, sandboxed=False),
    SpawnVariant("sandboxed", PopenSpawner, sandboxed=True),
)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def role_settings(role: str, root: Path, variant: SpawnVariant) -> ComponentSettings:
    """Settings for ``role`` as the daemon would make them, every role's datadir under
    ``root`` (created); a node gets a free RPC port."""
    datadirs = {r: root / r for r in ROLES}
    for path in datadirs.values():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    options: dict[str, Any] = {}
    if role == "node":
        options.update(rpcport=free_port(), rpcbind="127.0.0.1")
    return ComponentSettings(name=role, role=role, datadir=str(datadirs[role]),
                             options=options, sandbox=variant.sandbox(role),
                             datadirs={r: str(p) for r, p in datadirs.items()},
                             providers={} if role == "node" else {"chain": "node"})


def child_env(settings: ComponentSettings | None = None,
              extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A child's environment as the supervisor builds it: small and explicit."""
    env = {k: v for k, v in os.environ.items() if k in _PASSED_ENV}
    if settings is not None:
        env.update(settings.to_env())
    env[PARENT_PID_ENV] = str(os.getpid())
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def role_argv(role: str) -> list[str]:
    """The real role executable, started the way the supervisor starts it."""
    return [f"bitcoin-supervisor-{role}", "-ipcfd", "{fd}"]


def _interpreter() -> str:
    # A bare name: the spawner finds it next to sys.executable and keeps the venv's path.
    # An absolute path would be symlink-resolved to the base interpreter, outside the venv.
    return Path(sys.executable).name


def probe_argv() -> list[str]:
    """The minimal Python child: imports capnp and the ipc layer, serves Echo."""
    return [_interpreter(), str(PROBE_SCRIPT), "-ipcfd", "{fd}"]


def exec_floor_argv() -> list[str]:
    """An interpreter that imports nothing (no site) and exits: the cost of exec alone."""
    return [_interpreter(), "-S", "-c", "", "{fd}"]


class RunningChild:
    """A spawned child whose stdout lines are queued and whose stderr tail is kept."""

    def __init__(self, child: ChildProcess) -> None:
        self.child = child
        self.stdout: asyncio.Queue[str | None] = asyncio.Queue()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self.stderr_events: collections.deque[dict[str, Any]] = collections.deque(maxlen=200)
        self._drains = [asyncio.create_task(self._drain_stdout()),
                        asyncio.create_task(self._drain_stderr())]

    @property
    def pid(self) -> int:
        """The child's pid."""
        return self.child.pid

    async def _drain_stdout(self) -> None:
        stream = self.child.process.stdout
        assert stream is not None
        while line := await stream.readline():
            await self.stdout.put(line.decode(errors="replace").rstrip("\n"))
        await self.stdout.put(None)

    async def _drain_stderr(self) -> None:
        stream = self.child.process.stderr
        assert stream is not None
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip("\n")
            self.stderr_tail.append(text)
            try:
                event = json.loads(text)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.stderr_events.append(event)

    def logged(self, name: str) -> dict[str, Any] | None:
        """The first JSON log event called ``name`` the child wrote to stderr, or None."""
        return next((e for e in self.stderr_events if e.get("event") == name), None)

    async def next_json(self, timeout: float) -> dict[str, Any]:
        """Return the next stdout line that is a JSON object.

        Raises RuntimeError (with the child's stderr tail) if stdout ends first, and
        TimeoutError after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while (line := await self.stdout.get()) is not None:
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    return value
        raise RuntimeError(self.describe_failure("closed stdout before reporting"))

    def describe_failure(self, what: str) -> str:
        """One message naming the child and the last lines of its stderr."""
        tail = "\n".join(self.stderr_tail)
        return f"{self.child.argv[0]} (pid {self.pid}) {what}; stderr tail:\n{tail}"

    async def wait_exit(self) -> int:
        """Wait for exit and for both pipes to drain; return the returncode."""
        code = await self.child.wait()
        await asyncio.gather(*self._drains, return_exceptions=True)
        return code

    async def stop(self) -> float:
        """SIGTERM, reap (SIGKILL after ``STOP_TIMEOUT_S``); return milliseconds taken."""
        started = time.perf_counter()
        if self.child.process.returncode is None:
            self.child.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.wait_exit()), STOP_TIMEOUT_S)
            except TimeoutError:
                self.child.process.kill()
        await self.wait_exit()
        return (time.perf_counter() - started) * 1000


async def spawn(spawner: Spawner, argv: Sequence[str], env: Mapping[str, str]) -> RunningChild:
    """Spawn ``argv`` with ``spawner`` and start draining its pipes. Raises SpawnError."""
    return RunningChild(await spawner.spawn(argv, env=env))


async def connect(protocol: Protocol, child: RunningChild, name: str,
                  timeout: float = 30.0) -> Connection:
    """Bootstrap the child's Init; RuntimeError with its stderr if it dies or stalls."""
    try:
        async with asyncio.timeout(timeout):
            return await protocol.connect(child.child.sock, peer=name)
    except (TimeoutError, OSError, IpcError) as exc:
        raise RuntimeError(child.describe_failure(f"did not bootstrap ({exc!r})")) from exc
