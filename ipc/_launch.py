"""How a component process comes to exist: one ``Launcher`` seam, ending in an ``Endpoint``.

Bitcoin Core's ``ipc::Process`` makes spawn, connect and bind all end in "here is an fd";
this module does the same. A ``Launcher`` turns a ``LaunchRequest`` (data) into an
``Endpoint``: the link socket plus a ``ChildHandle`` (pid, wait, signal, output streams),
whatever made the process. Nothing outside ``ipc/`` sees ``asyncio.subprocess``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bitcoin_supervisor.interfaces import SpawnError

__all__ = [
    "FD_PLACEHOLDER",
    "DATADIR_PLACEHOLDER",
    "ChildHandle",
    "Endpoint",
    "LaunchRequest",
    "Launcher",
    "SocketpairLauncher",
    "expand_argv",
    "resolve_executable",
    "spawn_process",
]

FD_PLACEHOLDER = "{fd}"
DATADIR_PLACEHOLDER = "{datadir}"
# asyncio's default line limit is 64 KiB; a child printing longer lines gets them dropped
# (and reported) instead of stalling its pipe.
_STREAM_LIMIT = 1 << 16


class ChildHandle(ABC):
    """A started component process, however it was made (trio's ``Process``)."""

    @property
    @abstractmethod
    def pid(self) -> int:
        """The pid the launcher started (in the supervisor's pid namespace)."""

    @property
    @abstractmethod
    def argv(self) -> tuple[str, ...]:
        """The command line that was executed (after fd substitution)."""

    @property
    @abstractmethod
    def returncode(self) -> int | None:
        """None while running; the exit code, or ``-signal`` once it has ended."""

    @property
    @abstractmethod
    def output(self) -> Mapping[str, asyncio.StreamReader]:
        """The child's output streams by name (``stdout``, ``stderr``); the caller must
        drain them continuously or the child blocks on a full pipe."""

    @abstractmethod
    async def wait(self) -> int:
        """Wait for the process to end and return ``returncode``. Never raises."""

    @abstractmethod
    def send_signal(self, sig: int) -> bool:
        """Send ``sig`` to the process (by pidfd: never to a recycled pid). Returns False
        when the process is already gone. Never blocks."""

    @abstractmethod
    def close(self) -> None:
        """Release the handle's own resources (pidfd) once the process has ended."""


@dataclass
class Endpoint:
    """What a launch yields: the link to the component and its process.

    ``sock`` belongs to whoever connects to the component (a ``Protocol``); the child's
    end of a socketpair is already closed here, so the parent sees EOF once it dies.
    A bind-mode launch has no socket yet: ``dial`` waits for the program's own and
    connects (``link`` hides the difference).
    """

    sock: socket.socket | None
    child: ChildHandle
    dial: Callable[[], Awaitable[socket.socket]] | None = None
    # The supervisor's end of the component's introduction channel (``_intro``), if any.
    intro: socket.socket | None = None

    async def link(self) -> socket.socket:
        """Return the connected link socket (ownership passes to the caller), waiting for
        a bind-mode program to listen first. Raises SpawnError (one line: which path, how
        long) when no connection could be made before the launcher's deadline. Call once.
        """
        if self.sock is not None:
            return self.sock
        if self.dial is None:
            raise SpawnError("the endpoint has no link: it was handed out already")
        dial, self.dial = self.dial, None
        return await dial()


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a launcher needs to start one component process; plain data.

    ``argv`` is the program's command line template: ``{fd}`` (at least once)
    becomes the number of the inherited IPC socket. ``wrapper`` is put before it (a
    sandbox trampoline that applies confinement and then executes ``argv``); ``{fd}`` may
    appear there too. ``pass_fds`` are further descriptors the process inherits (the
    trampoline's plan, cgroup handles); the launcher does not close them.

    Bind mode (``BindLauncher``): ``socket`` is where the program listens, below ``cwd``
    (its datadir), and ``link_timeout_s`` how long it may take to get there; ``argv``
    then has no ``{fd}``.
    """

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path | None = None
    wrapper: tuple[str, ...] = ()
    pass_fds: tuple[int, ...] = ()
    socket: Path | None = None
    link_timeout_s: float = 30.0


class Launcher(ABC):
    """Makes component processes: socketpair spawn today; bind mode and a fork server slot
    in as further implementations with the same face."""

    @abstractmethod
    async def launch(self, request: LaunchRequest) -> Endpoint:
        """Start the process ``request`` describes and return its link and handle.

        Raises SpawnError (one line, names the executable) if it cannot be started; then
        nothing is left running and no descriptor of the link is left open.
        """


def resolve_executable(name: str) -> str:
    """Return an absolute path for ``name`` (not resolving symlinks: a venv's python is one
    and must keep its path to find the venv).

    A bare name is looked up next to the running interpreter first (the project's venv
    ``bin/``, where the role entry points are installed), then on PATH.
    Raises SpawnError if it is nowhere.
    """
    if os.sep in name:
        path = Path(name)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise SpawnError(f"cannot execute {name}: not an executable file")
        return str(path.absolute())
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise SpawnError(f"cannot execute {name}: not found next to {sys.executable} "
                         "nor on PATH")
    return str(Path(found).absolute())


def expand_argv(argv_template: Sequence[str], fd: int) -> list[str]:
    """Substitute the inherited fd number into the argv template (``{fd}`` must appear at
    least once) and make ``argv[0]`` absolute. Raises SpawnError otherwise."""
    if not any(FD_PLACEHOLDER in a for a in argv_template):
        raise SpawnError(f"argv template {list(argv_template)} must contain {FD_PLACEHOLDER}")
    argv = [a.replace(FD_PLACEHOLDER, str(fd)) for a in argv_template]
    argv[0] = resolve_executable(argv[0])
    return argv


class _ProcessHandle(ChildHandle):
    """``ChildHandle`` over an asyncio subprocess, signalled through a pidfd."""

    def __init__(self, process: asyncio.subprocess.Process, argv: Sequence[str]) -> None:
        self._process = process
        self._argv = tuple(argv)
        # Opened before anything can reap the child, so the pidfd names this process.
        try:
            self._pidfd: int | None = os.pidfd_open(process.pid)
        except OSError:  # a kernel without pidfd (< 5.3): fall back to the pid
            self._pidfd = None
        streams = {"stdout": process.stdout, "stderr": process.stderr}
        self._output = {k: v for k, v in streams.items() if v is not None}

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def argv(self) -> tuple[str, ...]:
        return self._argv

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    @property
    def output(self) -> Mapping[str, asyncio.StreamReader]:
        return self._output

    async def wait(self) -> int:
        return await self._process.wait()

    def send_signal(self, sig: int) -> bool:
        if self._process.returncode is not None:
            return False
        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, sig)
            else:
                os.kill(self._process.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None


async def spawn_process(argv: Sequence[str], request: LaunchRequest,
                        pass_fds: Sequence[int]) -> ChildHandle:
    """Fork+exec ``argv`` (already expanded, ``argv[0]`` absolute) with ``request``'s
    environment and working directory, stdin from /dev/null, stdout/stderr piped, in a
    session of its own. Raises SpawnError (one line) when the exec fails."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            pass_fds=tuple(pass_fds),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(request.env),
            cwd=request.cwd,
            close_fds=True,
            # Its own session: a terminal's Ctrl-C (or a signal to the daemon's process
            # group) reaches the supervisor alone, which then stops components in order.
            start_new_session=True,
            limit=_STREAM_LIMIT,
        )
    except OSError as exc:
        raise SpawnError(f"cannot execute {(request.wrapper or request.argv)[0]}: "
                         f"{exc.strerror}") from exc
    return _ProcessHandle(process, argv)


class SocketpairLauncher(Launcher):
    """Cold start with one end of a fresh ``AF_UNIX`` socketpair inherited as an fd
    (Bitcoin Core's ``-ipcfd N``): fork+exec per launch."""

    async def launch(self, request: LaunchRequest) -> Endpoint:
        try:
            parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as exc:  # EMFILE/ENFILE: the daemon is out of descriptors
            raise SpawnError(f"cannot create the IPC socketpair: {exc.strerror}") from exc
        fd = child_end.fileno()
        try:
            argv = [a.replace(FD_PLACEHOLDER, str(fd)) for a in request.wrapper]
            argv += expand_argv(request.argv, fd)
            argv[0] = resolve_executable(argv[0])
            child = await spawn_process(argv, request, (fd, *request.pass_fds))
        except BaseException:
            parent_end.close()
            raise
        finally:
            # Keeping the child's end open here would hide the child's death (no EOF).
            child_end.close()
        return Endpoint(sock=parent_end, child=child)
