"""The supervisor's launcher seam: how a component's process comes to exist, confined.

``Component`` only ever calls ``ComponentLauncher``: launch (an ``Endpoint``), verify (the
confinement observed in ``/proc``), release (after the exit). ``ConfinedLauncher`` is the
real one: it plans the sandbox (``sandbox.make_plan``), hands the plan to the trampoline
through a sealed memfd, and lets an ``ipc.Launcher`` (socketpair spawn today; bind mode and
a fork server later) start ``trampoline -- program``. Unit tests put a fake in its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bitcoin_supervisor.interfaces import PolicyError, SandboxError, SpawnError
from bitcoin_supervisor.ipc import (
    FD_PLACEHOLDER,
    Endpoint,
    Launcher,
    LaunchRequest,
    SocketpairLauncher,
    resolve_executable,
)
from bitcoin_supervisor.sandbox import (
    Confinement,
    LaunchPlan,
    Policy,
    make_plan,
    plan_fd,
    remove_cgroups,
    trampoline_argv,
    verify_confinement,
)

__all__ = ["ComponentLauncher", "ConfinedLauncher", "LaunchSpec"]


@dataclass(frozen=True)
class LaunchSpec:
    """One component run to start: its name, command line template (``{fd}``), the
    environment, its datadir (the working directory) and the policy (None: unconfined)."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    datadir: Path
    policy: Policy | None


class ComponentLauncher(ABC):
    """Starts, checks and cleans up after one component process at a time."""

    @abstractmethod
    async def launch(self, spec: LaunchSpec) -> Endpoint:
        """Start the process; raises SpawnError (one line) when it cannot be started."""

    @abstractmethod
    async def verify(self, spec: LaunchSpec, endpoint: Endpoint) -> Confinement:
        """Observe the running process's confinement. Never raises."""

    @abstractmethod
    async def release(self, spec: LaunchSpec, endpoint: Endpoint) -> None:
        """Clean up after the process has exited (its cgroups). Never raises."""


class ConfinedLauncher(ComponentLauncher):
    """Every process goes through the sandbox trampoline: confined before the program's
    first instruction, whatever the program is."""

    def __init__(self, transport: Launcher | None = None) -> None:
        self._transport = transport or SocketpairLauncher()

    async def launch(self, spec: LaunchSpec) -> Endpoint:
        loop = asyncio.get_running_loop()
        executable = Path(resolve_executable(spec.argv[0]))

        def plan() -> LaunchPlan:
            spec.datadir.mkdir(parents=True, exist_ok=True, mode=0o700)
            return make_plan(spec.policy, name=spec.name, executable=executable,
                             cwd=spec.datadir)
        try:
            # File reads (program headers, syscall groups) and mkdir: off the event loop.
            planned = await loop.run_in_executor(None, plan)
        except (SandboxError, PolicyError) as exc:
            raise SpawnError(f"cannot plan the sandbox of {spec.name}: {exc}") from exc
        except OSError as exc:
            raise SpawnError(f"cannot create the datadir of {spec.name}: {exc}") from exc
        fd = plan_fd(planned)
        try:
            request = LaunchRequest(
                argv=(str(executable), *spec.argv[1:]), env=spec.env, cwd=spec.datadir,
                wrapper=trampoline_argv(fd, FD_PLACEHOLDER), pass_fds=(fd,))
            return await self._transport.launch(request)
        finally:
            os.close(fd)  # the child has its copy

    async def verify(self, spec: LaunchSpec, endpoint: Endpoint) -> Confinement:
        return await asyncio.get_running_loop().run_in_executor(
            None, verify_confinement, endpoint.child.pid, spec.policy)

    async def release(self, spec: LaunchSpec, endpoint: Endpoint) -> None:
        endpoint.child.close()
        if spec.policy is not None and spec.policy.cgroup is not None:
            with contextlib.suppress(OSError):
                await asyncio.get_running_loop().run_in_executor(
                    None, remove_cgroups, spec.name, endpoint.child.pid)
