"""The supervisor's side of confinement: which policy a component runs under, and the
trampoline command line that applies it."""

from __future__ import annotations

import sys
from pathlib import Path

from bitcoin_supervisor.interfaces import ComponentSettings

from ._loader import load_policy
from ._policy import Policy


def policy_for(settings: ComponentSettings) -> Policy | None:
    """Resolve the policy a component runs under (None when it runs unsandboxed).

    The supervisor calls this to validate before spawning anything and to plan each
    launch. Pure. Raises PolicyError with file:line.
    """
    if settings.sandbox is None:
        return None
    datadirs = {name: Path(path) for name, path in settings.datadirs.items()}
    datadirs[settings.name] = Path(settings.datadir)
    return load_policy(settings.sandbox, name=settings.name, datadirs=datadirs,
                       providers=settings.providers, options=settings.options)


def trampoline_argv(plan_fd: int, ipc_fd_placeholder: str | None,
                    keep_fds: tuple[int, ...] = ()) -> tuple[str, ...]:
    """The command line prefix that runs the sandbox trampoline on the plan in
    ``plan_fd``; the program's own argv follows it. ``-I``: the trampoline starts as the
    supervisor's user (often root), so no environment variable may steer its imports.
    ``ipc_fd_placeholder`` None: a bind-mode program, which inherits no IPC socket.
    ``keep_fds``: further inherited descriptors the program keeps (an introduction
    channel); every other one is closed before it runs."""
    ipc = ("--ipc-fd", ipc_fd_placeholder) if ipc_fd_placeholder is not None else ()
    keep = tuple(a for fd in keep_fds for a in ("--keep-fd", str(fd)))
    return (sys.executable, "-I", "-m", "bitcoin_supervisor.sandbox",
            "--plan-fd", str(plan_fd), *ipc, *keep, "--")
