"""How a component process comes to exist: socketpair, fd inheritance, ``<exe> -ipcfd N``."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bitcoin_supervisor.interfaces import SpawnError

FD_PLACEHOLDER = "{fd}"


@dataclass
class ChildProcess:
    """A spawned component: its process handle and the parent's end of the IPC link.

    ``sock`` belongs to whoever connects to the child; the child's end is already closed
    in this process, so the parent sees EOF as soon as the child dies.
    """

    pid: int
    process: asyncio.subprocess.Process
    sock: socket.socket
    argv: tuple[str, ...]

    async def wait(self) -> int:
        """Wait for the process to exit and return its returncode (negative: signal)."""
        return await self.process.wait()


class Spawner(ABC):
    """Creates component processes; cold exec today, a fork server later (same face)."""

    @abstractmethod
    async def spawn(self, argv_template: Sequence[str], *, env: Mapping[str, str],
                    cwd: Path | None = None) -> ChildProcess:
        """Start a child with one end of a new socketpair inherited as an fd.

        ``argv_template`` must contain ``{fd}`` in exactly one element; it is replaced
        with the inherited fd number. stdout/stderr are pipes the caller must drain.
        Raises SpawnError (one line, names the executable) if the process cannot start.
        """


def resolve_executable(name: str) -> str:
    """Return an absolute path for ``name``.

    A bare name is looked up next to the running interpreter first (the project's
    venv ``bin/``, where the role entry points are installed), then on PATH.
    Raises SpawnError if it is nowhere.
    """
    if os.sep in name:
        path = Path(name)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise SpawnError(f"cannot execute {name}: not an executable file")
        return str(path.absolute())  # not resolve(): a venv python is a symlink
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise SpawnError(f"cannot execute {name}: not found next to {sys.executable} "
                         "nor on PATH")
    return found


def expand_argv(argv_template: Sequence[str], fd: int) -> list[str]:
    """Substitute the inherited fd number into the argv template."""
    if sum(FD_PLACEHOLDER in a for a in argv_template) != 1:
        raise SpawnError(f"argv template {list(argv_template)} must contain {FD_PLACEHOLDER} "
                         "exactly once")
    argv = [a.replace(FD_PLACEHOLDER, str(fd)) for a in argv_template]
    argv[0] = resolve_executable(argv[0])
    return argv


class PopenSpawner(Spawner):
    """Cold start: fork+exec a fresh executable for every spawn."""

    async def spawn(self, argv_template: Sequence[str], *, env: Mapping[str, str],
                    cwd: Path | None = None) -> ChildProcess:
        try:
            parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as exc:  # EMFILE/ENFILE: the daemon is out of descriptors
            raise SpawnError(f"cannot create the IPC socketpair: {exc.strerror}") from exc
        try:
            argv = expand_argv(argv_template, child_end.fileno())
            process = await asyncio.create_subprocess_exec(
                *argv,
                pass_fds=(child_end.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=dict(env),
                cwd=cwd,
                close_fds=True,
            )
        except OSError as exc:
            parent_end.close()
            raise SpawnError(f"cannot execute {argv_template[0]}: {exc.strerror}") from exc
        except SpawnError:
            parent_end.close()
            raise
        finally:
            # Keeping the child's end open here would hide the child's death (no EOF).
            child_end.close()
        return ChildProcess(pid=process.pid, process=process, sock=parent_end, argv=tuple(argv))
