"""Child processes for the benchmarks: real role executables and the minimal probe child,
launched through the project's own launchers and drained so no pipe ever fills."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitcoin_supervisor.interfaces import ComponentSettings, SupervisorError
from bitcoin_supervisor.ipc import (
    Connection,
    Endpoint,
    LaunchRequest,
    Protocol,
    Schema,
    SocketpairLauncher,
)
from bitcoin_supervisor.sandbox import Policy, policy_for

# Not re-exported by the supervisor package: the bench starts components exactly as the
# daemon does, without a daemon.
from bitcoin_supervisor.supervisor._launcher import ConfinedLauncher, LaunchSpec

PROBE_SCRIPT = Path(__file__).resolve().parent / "_probe.py"
PROBE_CALLS_ENV = "BENCH_PROBE_CALLS"
ROLES = ("node", "wallet", "index")
FLOOR_LABEL = "python child serving Echo (capnp only)"
STOP_TIMEOUT_S = 10.0
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "HOME")


@dataclass(frozen=True)
class SpawnVariant:
    """One way of bringing a component up, measured side by side with the others.

    ``trampoline``: started by the daemon's ``ConfinedLauncher`` (the program runs behind
    ``python -I -m bitcoin_supervisor.sandbox``); False: a plain ``SocketpairLauncher``
    spawn, which shows what the trampoline itself costs. ``sandboxed``: the trampoline
    applies the role's own policy (``policies/<role>.toml``) before the program runs.
    Add a variant to ``VARIANTS`` and every benchmark that compares variants measures it
    too; the daemon benchmarks and the call latencies use ``DAEMON_VARIANTS`` (the daemon
    always launches through the trampoline, and a call does not care how the process
    was started).
    """

    name: str
    trampoline: bool
    sandboxed: bool

    def __post_init__(self) -> None:
        if self.sandboxed and not self.trampoline:
            raise ValueError(f"variant {self.name}: only the trampoline confines")

    def sandbox(self, role: str) -> str | None:
        """The policy name a component of ``role`` runs under; None: unsandboxed."""
        return role if self.sandboxed else None

    def config_value(self, role: str) -> str:
        """The component's ``sandbox`` value in a config file."""
        return self.sandbox(role) or "none"


# Hook for the fork server (issue 9, branch fork): one more variant here ("fork-server",
# a launch that forks from the role's pre-initialised template) and spawn_to_init and
# restart_latency measure it beside these in the same run; the README's spawn table
# keeps a row for it.
VARIANTS: tuple[SpawnVariant, ...] = (
    SpawnVariant("direct", trampoline=False, sandboxed=False),
    SpawnVariant("unsandboxed", trampoline=True, sandboxed=False),
    SpawnVariant("sandboxed", trampoline=True, sandboxed=True),
)
DAEMON_VARIANTS: tuple[SpawnVariant, ...] = tuple(v for v in VARIANTS if v.trampoline)


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
    """A child's environment as the supervisor builds it: small and explicit; a component
    gets its datadir as HOME (a HOME-less Python asks NSS, which a role's filter kills)."""
    env = {k: v for k, v in os.environ.items() if k in _PASSED_ENV}
    if settings is not None:
        env.update(settings.to_env())
        env["HOME"] = settings.datadir
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def role_argv(role: str) -> tuple[str, ...]:
    """The real role executable, started the way the supervisor starts it."""
    return (f"bitcoin-supervisor-{role}", "-ipcfd", "{fd}")


def _interpreter() -> str:
    # A bare name: the launcher finds it next to sys.executable and keeps the venv's path.
    # An absolute path would be symlink-resolved to the base interpreter, outside the venv.
    return Path(sys.executable).name


def probe_argv() -> tuple[str, ...]:
    """The minimal Python child: imports capnp and the ipc layer, serves Echo."""
    return (_interpreter(), str(PROBE_SCRIPT), "-ipcfd", "{fd}")


def exec_floor_argv() -> tuple[str, ...]:
    """An interpreter that imports nothing (no site) and exits: the cost of exec alone."""
    return (_interpreter(), "-S", "-c", "", "{fd}")


@dataclass(frozen=True)
class Launch:
    """One child ready to start: everything resolved up front (the daemon resolves a
    component's policy once, not per start), so ``start()`` times only the launch.

    ``policy`` is ignored without ``trampoline``; ``name`` and ``datadir`` only matter
    with it (the plan's name, the child's working directory).
    """

    argv: tuple[str, ...]
    env: Mapping[str, str]
    trampoline: bool = False
    name: str = "bench"
    datadir: Path | None = None
    policy: Policy | None = None
    intro: bool = False  # with the trampoline: give it an introduction channel

    async def start(self) -> RunningChild:
        """Launch the child and start draining its output. Raises SpawnError."""
        if not self.trampoline:
            endpoint = await SocketpairLauncher().launch(
                LaunchRequest(argv=self.argv, env=self.env, cwd=self.datadir))
            return RunningChild(endpoint)
        assert self.datadir is not None, "a trampoline launch needs a datadir"
        launcher = ConfinedLauncher()
        spec = LaunchSpec(name=self.name, argv=self.argv, env=self.env,
                          datadir=self.datadir, policy=self.policy, intro=self.intro)
        endpoint = await launcher.launch(spec)
        return RunningChild(endpoint, release=lambda: launcher.release(spec, endpoint))


def plain(argv: Sequence[str], env: Mapping[str, str]) -> Launch:
    """A child spawned directly on a socketpair: no trampoline, never confined."""
    return Launch(tuple(argv), env)


def role_launch(role: str, root: Path, variant: SpawnVariant,
                extra_env: Mapping[str, str] | None = None, intro: bool = False) -> Launch:
    """The real ``role`` executable launched as ``variant`` says, its datadir (and its
    peers') under ``root``. Raises PolicyError when the role's policy does not load."""
    settings = role_settings(role, root, variant)
    return Launch(role_argv(role), child_env(settings, extra_env),
                  trampoline=variant.trampoline, name=role, datadir=Path(settings.datadir),
                  policy=policy_for(settings), intro=intro)


class RunningChild:
    """A launched child whose stdout lines are queued and whose stderr tail is kept."""

    def __init__(self, endpoint: Endpoint,
                 release: Callable[[], Awaitable[None]] | None = None) -> None:
        self.endpoint = endpoint
        self.child = endpoint.child
        self.stdout: asyncio.Queue[str | None] = asyncio.Queue()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self.stderr_events: collections.deque[dict[str, Any]] = collections.deque(maxlen=200)
        self._release = release
        self._released = False
        self._drains = [asyncio.create_task(self._drain_stdout()),
                        asyncio.create_task(self._drain_stderr())]

    @property
    def pid(self) -> int:
        """The launched process's pid (the trampoline's, which may stay as the waiter)."""
        return self.child.pid

    @property
    def sock(self) -> socket.socket:
        """Our end of the IPC link."""
        return self.endpoint.sock

    async def _drain_stdout(self) -> None:
        stream = self.child.output["stdout"]
        while line := await stream.readline():
            await self.stdout.put(line.decode(errors="replace").rstrip("\n"))
        await self.stdout.put(None)

    async def _drain_stderr(self) -> None:
        stream = self.child.output["stderr"]
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
        argv = self.child.argv
        # Behind the trampoline, name the program it runs rather than the interpreter.
        program = argv[argv.index("--") + 1] if "--" in argv[:-1] else argv[0]
        tail = "\n".join(self.stderr_tail)
        return f"{program} (pid {self.pid}) {what}; stderr tail:\n{tail}"

    async def wait_exit(self) -> int:
        """Wait for exit and for both pipes to drain, then release what the launcher
        holds for the child (pidfd, cgroups); return the returncode."""
        code = await self.child.wait()
        await asyncio.gather(*self._drains, return_exceptions=True)
        if not self._released:
            self._released = True
            if self._release is not None:
                await self._release()
            else:
                self.child.close()
        return code

    async def stop(self) -> float:
        """SIGTERM, reap (SIGKILL after ``STOP_TIMEOUT_S``); return milliseconds taken."""
        started = time.perf_counter()
        if self.child.send_signal(signal.SIGTERM):
            try:
                await asyncio.wait_for(asyncio.shield(self.wait_exit()), STOP_TIMEOUT_S)
            except TimeoutError:
                self.child.send_signal(signal.SIGKILL)
        await self.wait_exit()
        return (time.perf_counter() - started) * 1000


async def connect(protocol: Protocol, child: RunningChild, name: str,
                  timeout: float = 30.0, schema: Schema = "bitcoin-supervisor"
                  ) -> Connection:
    """Bootstrap the child's Init (served under ``schema``); RuntimeError with its stderr
    if it dies or stalls."""
    try:
        async with asyncio.timeout(timeout):
            # Bind mode: link() waits for the program's own socket and dials it.
            sock = await child.endpoint.link()
            return await protocol.connect(sock, peer=name, schema=schema)
    except (TimeoutError, OSError, SupervisorError) as exc:
        raise RuntimeError(child.describe_failure(f"did not bootstrap ({exc!r})")) from exc
