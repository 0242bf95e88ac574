"""The supervisor's launcher seam: how a component's process comes to exist, confined.

``Component`` only ever calls ``ComponentLauncher``: launch (an ``Endpoint``), verify (the
confinement observed in ``/proc``), release (after the exit). ``ConfinedLauncher`` is the
real one: it plans the sandbox (``sandbox.make_plan``), hands the plan to the trampoline
through a sealed memfd, and lets an ``ipc.Launcher`` (socketpair spawn, or bind mode for a
program that listens itself) start ``trampoline -- program``, or has the role's fork
server fork it (``_forkserver``; the same plan, the same confinement code, no exec), falling
back to the cold path when no template is available. Unit tests put a fake in its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bitcoin_supervisor.interfaces import PolicyError, SandboxError, SpawnError
from bitcoin_supervisor.ipc import (
    FD_PLACEHOLDER,
    INTRO_FD_ENV,
    BindLauncher,
    Endpoint,
    Launcher,
    LaunchRequest,
    SocketpairLauncher,
    make_intro_pair,
    resolve_executable,
)
from bitcoin_supervisor.log import get_logger
from bitcoin_supervisor.sandbox import (
    ComponentCgroup,
    Confinement,
    DiskImage,
    LaunchPlan,
    Policy,
    create_cgroup,
    loop_support_problem,
    make_plan,
    plan_fd,
    trampoline_argv,
    verify_confinement,
)

from ._forkserver import ForkServers, role_entry

__all__ = ["ComponentLauncher", "ConfinedLauncher", "LaunchSpec"]


@dataclass(frozen=True)
class LaunchSpec:
    """One component run to start: its name, command line template (``{fd}``), the
    environment, its datadir (the working directory) and the policy (None: unconfined).
    ``socket`` set: bind mode, the program listens there (inside ``datadir``) within
    ``link_timeout_s`` and its argv has no ``{fd}``."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    datadir: Path
    policy: Policy | None
    source: Path = Path("config")  # named in errors about this component's cgroup
    socket: Path | None = None
    link_timeout_s: float = 30.0
    # Give it an introduction channel (``ipc.IntroInbox``): a socket over which the
    # broker can pass it direct links. Spawn mode only.
    intro: bool = False
    fork_server: bool = False  # from the role's fork server when it is one of ours
    # Its disk budget: the image mounted on ``datadir`` before it starts (None: none);
    # ``image`` is where that image is or would be, budget or not.
    disk: DiskImage | None = None
    image: Path | None = None


class ComponentLauncher(ABC):
    """Starts, checks, kills and cleans up after component processes (one launcher
    serves every component of a daemon)."""

    @abstractmethod
    async def launch(self, spec: LaunchSpec) -> Endpoint:
        """Start the process; raises SpawnError (one line) when it cannot be started."""

    @abstractmethod
    async def verify(self, spec: LaunchSpec, endpoint: Endpoint) -> Confinement:
        """Observe the running process's confinement. Never raises."""

    @abstractmethod
    async def kill(self, spec: LaunchSpec, endpoint: Endpoint) -> None:
        """Kill the process and every descendant it left (the whole tree). Never raises."""

    @abstractmethod
    async def release(self, spec: LaunchSpec, endpoint: Endpoint) -> None:
        """Clean up after the process has exited: kill whatever it left behind and remove
        its cgroup. Never raises."""

    def usage(self, endpoint: Endpoint) -> dict[str, int] | None:
        """Resource usage of the running process tree (cgroup), None if unknown.
        Blocking cgroupfs reads: call from an executor. Never raises."""
        return None

    async def close(self) -> None:
        """Stop whatever the launcher keeps running between launches (fork servers) once
        the daemon stops. Never raises."""
        return

    def timings(self, pid: int) -> dict[str, object]:
        """How the launch of process ``pid`` went (step ms, which path), once; empty if
        unknown. Never raises."""
        return {}

    async def unmount(self, spec: LaunchSpec) -> None:
        """Unmount the component's disk image (it has stopped); a no-op without one.
        Never raises (a failure is logged: the next start reuses the mount)."""
        return None


class ConfinedLauncher(ComponentLauncher):
    """Every process goes through the sandbox trampoline: confined before the program's
    first instruction, whatever the program is, inside a cgroup the supervisor created,
    limited and kills through."""

    def __init__(self, transport: Launcher | None = None,
                 bind: Launcher | None = None) -> None:
        self._transport = transport or SocketpairLauncher()
        self._bind = bind or BindLauncher()
        self._cgroups: dict[int, ComponentCgroup] = {}  # by the launched process's pid
        self._forks = ForkServers()
        # Per-launch step timings (ms) by pid, for the restart breakdown; popped by
        # ``timings``.
        self._timings: dict[int, dict[str, object]] = {}
        # Mounting (at a start) and unmounting (at a stop) of one image never overlap.
        self._disk_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._unbudgeted: set[str] = set()  # warned once: no budget without root

    async def close(self) -> None:
        await self._forks.close()

    def timings(self, pid: int) -> dict[str, object]:
        """The launch's step timings (ms) of process ``pid``, once. Never raises."""
        return self._timings.pop(pid, {})

    async def launch(self, spec: LaunchSpec) -> Endpoint:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        executable = Path(resolve_executable(spec.argv[0]))
        entry = role_entry(executable) if spec.fork_server and spec.socket is None else None
        network = spec.policy is None or spec.policy.network != "none"
        template = await self._forks.get(entry, network=network) if entry else None
        if entry and template is None:
            get_logger().warning("fork_server.fallback", component=spec.name,
                                 entry=entry, reason="no template ready")
        limits = spec.policy.cgroup if spec.policy is not None else None
        source = spec.policy.source if spec.policy is not None else spec.source

        def prepare() -> tuple[LaunchPlan, ComponentCgroup | None]:
            self._mount(spec)
            spec.datadir.mkdir(parents=True, exist_ok=True, mode=0o700)
            cgroup = create_cgroup(limits, spec.name, source=source)
            fds = tuple(cgroup.join_fds()) if cgroup is not None else ()
            try:
                return make_plan(spec.policy, name=spec.name, executable=executable,
                                 cwd=spec.datadir, cgroup_fds=fds), cgroup
            except BaseException:
                if cgroup is not None:
                    cgroup.remove()
                raise
        try:
            # File reads (program headers, syscall groups), mkdir, mounts and cgroupfs
            # writes: off the event loop.
            planned, cgroup = await loop.run_in_executor(None, prepare)
        except _DiskError as exc:
            raise SpawnError(str(exc)) from exc
        except (SandboxError, PolicyError) as exc:
            raise SpawnError(f"cannot plan the sandbox of {spec.name}: {exc}") from exc
        except OSError as exc:
            raise SpawnError(f"cannot create the datadir of {spec.name}: {exc}") from exc
        planned_at = time.perf_counter()
        fd = plan_fd(planned)
        bind = spec.socket is not None
        intro = _intro_pair() if spec.intro and not bind else None
        try:
            keep: tuple[int, ...] = (intro[1].fileno(),) if intro is not None else ()
            env = dict(spec.env)
            if template is not None:
                try:
                    endpoint = await template.spawn(
                        LaunchRequest(argv=(str(executable), *spec.argv[1:]), env=env),
                        fd, planned.cgroup_fds,
                        intro=(INTRO_FD_ENV, keep[0]) if keep else None)
                except SpawnError as exc:
                    get_logger().warning("fork_server.fallback", component=spec.name,
                                         entry=entry, reason=str(exc))
                    cold = plan_fd(dataclasses.replace(planned, parent_pid=os.getpid()))
                    os.close(fd)
                    fd = cold
                else:
                    if intro is not None:
                        endpoint.intro = intro[0]
                    self._record(endpoint, started, planned_at, "fork_server")
                    if cgroup is not None:
                        self._cgroups[endpoint.child.pid] = cgroup
                    return endpoint
            if intro is not None:
                env[INTRO_FD_ENV] = str(keep[0])
            request = LaunchRequest(
                argv=(str(executable), *spec.argv[1:]), env=env, cwd=spec.datadir,
                wrapper=trampoline_argv(fd, None if bind else FD_PLACEHOLDER, keep),
                pass_fds=(fd, *planned.cgroup_fds, *keep), socket=spec.socket,
                link_timeout_s=spec.link_timeout_s)
            transport = self._bind if bind else self._transport
            endpoint = await transport.launch(request)
        except BaseException:
            if intro is not None:
                intro[0].close()
            if cgroup is not None:
                await loop.run_in_executor(None, cgroup.remove)
            raise
        finally:
            os.close(fd)  # the child has its copies
            if intro is not None:
                intro[1].close()
            if cgroup is not None:
                cgroup.close_fds()
        if intro is not None:
            endpoint.intro = intro[0]
        if cgroup is not None:
            self._cgroups[endpoint.child.pid] = cgroup
        self._record(endpoint, started, planned_at, "bind" if bind else "cold")
        return endpoint

    def _record(self, endpoint: Endpoint, started: float, planned_at: float,
                path: str) -> None:
        now = time.perf_counter()
        self._timings[endpoint.child.pid] = {
            "plan_ms": round((planned_at - started) * 1000, 3),
            "spawn_ms": round((now - planned_at) * 1000, 3),
            "fork_server": path == "fork_server"}

    async def verify(self, spec: LaunchSpec, endpoint: Endpoint) -> Confinement:
        return await asyncio.get_running_loop().run_in_executor(
            None, verify_confinement, endpoint.child.pid, spec.policy)

    async def kill(self, spec: LaunchSpec, endpoint: Endpoint) -> None:
        cgroup = self._cgroups.get(endpoint.child.pid)
        if cgroup is None:
            endpoint.child.send_signal(signal.SIGKILL)
            return
        await asyncio.get_running_loop().run_in_executor(None, cgroup.kill)

    async def release(self, spec: LaunchSpec, endpoint: Endpoint) -> None:
        endpoint.child.close()
        if endpoint.intro is not None:
            endpoint.intro.close()
        cgroup = self._cgroups.pop(endpoint.child.pid, None)
        if cgroup is None:
            return

        def clean() -> None:
            cgroup.kill()  # a descendant that outlived the component goes with it
            cgroup.remove()
        with contextlib.suppress(OSError):
            await asyncio.get_running_loop().run_in_executor(None, clean)

    def usage(self, endpoint: Endpoint) -> dict[str, int] | None:
        cgroup = self._cgroups.get(endpoint.child.pid)
        return cgroup.usage() if cgroup is not None else None

    def _mount(self, spec: LaunchSpec) -> None:
        """Mount the disk image on the datadir (blocking); raises _DiskError (one line)."""
        disk = spec.disk
        if disk is None:
            if spec.image is not None and spec.image.exists():
                # Starting on the empty directory under it would hide the data.
                raise _DiskError(
                    f"{spec.name}'s data is in its disk image {spec.image}, but its "
                    'disk_budget is "none"; set a disk_budget again (or move the data out '
                    "of the image and delete it)")
            return
        problem = loop_support_problem()
        if problem is not None:
            # Unprivileged, or a root daemon without loop devices (systemd's
            # PrivateDevices=yes): it runs without a budget and says so (warned here
            # once, shown in status), as with disk_budget = "none".
            if spec.name not in self._unbudgeted:
                self._unbudgeted.add(spec.name)
                get_logger().warning("disk.unbudgeted", component=spec.name, why=problem)
            return
        owner = spec.policy.uid if spec.policy is not None else None
        uid = owner if owner is not None else os.geteuid()
        gid = spec.policy.gid if spec.policy is not None and spec.policy.gid is not None \
            else uid
        with self._disk_locks[spec.name]:
            try:
                disk.mount(uid, gid)
            except SandboxError as exc:
                raise _DiskError(f"cannot mount the disk image of {spec.name}: {exc}") \
                    from exc
            except OSError as exc:
                raise _DiskError(f"cannot mount the disk image of {spec.name}: "
                                 f"{exc.strerror} ({exc.filename})") from exc

    async def unmount(self, spec: LaunchSpec) -> None:
        disk = spec.disk
        if disk is None or loop_support_problem() is not None:
            return

        def unmount() -> None:
            with self._disk_locks[spec.name]:
                disk.unmount()
        try:
            await asyncio.get_running_loop().run_in_executor(None, unmount)
        except (SandboxError, OSError) as exc:
            get_logger().error("disk.unmount_failed", component=spec.name, error=str(exc))


class _DiskError(Exception):
    """A disk image could not be mounted: the whole message is for the user."""


def _intro_pair() -> tuple[socket.socket, socket.socket]:
    try:
        return make_intro_pair()
    except OSError as exc:  # EMFILE/ENFILE: the daemon is out of descriptors
        raise SpawnError(f"cannot create the introduction channel: {exc.strerror}") from exc
