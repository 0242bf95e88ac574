"""The supervisor's side of the per-role fork servers (``sandbox._forkserver``): start one
template per role entry point, restart it when it dies, and turn its spawns into
``Endpoint``s whose ``ChildHandle`` works like a cold child's.

A forked child is not the template's child but ours (the template clones it with
CLONE_PARENT): it is tracked and reaped through the pidfd the clone made, so its exit
status comes from the kernel whether or not its template still lives (no zombie, no
status lost with a dead template), its output from pipes we created and passed, and it is
killed with its whole tree through its cgroup, exactly as a cold child.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import SpawnError
from bitcoin_supervisor.ipc import ChildHandle, Endpoint, LaunchRequest, spawn_process
from bitcoin_supervisor.sandbox import fork_server_argv, fork_wire

from ._tree import readable

__all__ = ["ROLE_SCRIPTS", "SPAWN_TIMEOUT_S", "ForkServers", "role_entry"]

_READY_TIMEOUT_S = 60.0  # imports on a loaded 2-core machine; generous, awaited not polled
_RETRY_AFTER_S = 30.0  # a template that could not start is not retried before this
# A fork takes milliseconds; a template that has not answered a spawn by then is hung
# (stopped, wedged): it is killed and restarted, and the spawn goes cold.
SPAWN_TIMEOUT_S = 10.0
_STREAM_LIMIT = 1 << 16


# Our role console scripts and their entry points, as pyproject.toml's [project.scripts]
# declares them (tests/unit/test_role_scripts.py holds the two equal). Read from package
# metadata, they would keep importlib.metadata, email, zipfile and csv in the daemon for
# good (~1 MiB of its RSS) to learn three names.
ROLE_SCRIPTS = {
    "bitcoin-supervisor-node": "bitcoin_supervisor.roles.node:main",
    "bitcoin-supervisor-wallet": "bitcoin_supervisor.roles.wallet:main",
    "bitcoin-supervisor-index": "bitcoin_supervisor.roles.index:main",
}


def role_entry(executable: Path) -> str | None:
    """``module:function`` of one of our role console scripts installed beside the running
    interpreter (``.venv/bin/bitcoin-supervisor-wallet``), None for any other program
    (which always starts cold). Pure."""
    if executable.parent != Path(sys.executable).parent:
        return None
    return ROLE_SCRIPTS.get(executable.name)


class _ForkedChild(ChildHandle):
    """A child of ours forked by a template: waited for and signalled through its pidfd."""

    def __init__(self, pid: int, pidfd: int, argv: tuple[str, ...],
                 output: Mapping[str, asyncio.StreamReader]) -> None:
        self._pid, self._pidfd, self._argv, self._output = pid, pidfd, argv, output
        self._returncode: int | None = None
        self._closing = False
        # Reaped as soon as it exits, whether or not anyone waits (as asyncio reaps a
        # cold child).
        self._waiter = asyncio.ensure_future(self._reap())

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def argv(self) -> tuple[str, ...]:
        return self._argv

    @property
    def returncode(self) -> int | None:
        return self._returncode

    @property
    def output(self) -> Mapping[str, asyncio.StreamReader]:
        return self._output

    async def wait(self) -> int:
        return await asyncio.shield(self._waiter)

    async def _reap(self) -> int:
        try:
            await readable(self._pidfd)
            try:
                result = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                result = None  # cannot happen for our own child: nobody else reaps it
            if result is None:
                log.get_logger().error("fork_server.status_lost", pid=self._pid)
                self._returncode = -signal.SIGKILL
            elif result.si_code == os.CLD_EXITED:
                self._returncode = result.si_status
            else:  # CLD_KILLED, CLD_DUMPED
                self._returncode = -result.si_status
        finally:
            if self._closing:
                self._close_pidfd()
        return self._returncode

    def send_signal(self, sig: int) -> bool:
        if self._returncode is not None or self._pidfd < 0:
            return False
        try:
            signal.pidfd_send_signal(self._pidfd, sig)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        if self._waiter.done():
            self._close_pidfd()
        else:
            self._closing = True  # still needed to reap it; closed once it is reaped

    def _close_pidfd(self) -> None:
        if self._pidfd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = -1


class _Template:
    """One running template and its control link."""

    def __init__(self, entry: str, network: bool, on_lost: Callable[[], None]) -> None:
        self.entry, self.network, self._on_lost = entry, network, on_lost
        self.sock: socket.socket | None = None
        self.process: ChildHandle | None = None
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[tuple[int, int]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._gone = False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.sock is not None and self.process is not None \
            and self.process.returncode is None

    async def start(self) -> None:
        """Start the template and wait until it is ready. Raises SpawnError."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            argv = fork_server_argv(theirs.fileno(), self.entry, parent=os.getpid(),
                                    network=self.network)
            self.process = await spawn_process(argv, LaunchRequest(argv=argv, env={}),
                                               (theirs.fileno(),))
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        asyncio.get_running_loop().add_reader(ours.fileno(), self._readable)
        self._tasks = [asyncio.create_task(self._relay(name, stream))
                       for name, stream in self.process.output.items()]
        exited = asyncio.ensure_future(self.process.wait())
        done, _ = await asyncio.wait([self.ready, exited], timeout=_READY_TIMEOUT_S,
                                     return_when=asyncio.FIRST_COMPLETED)
        if self.ready not in done or self.ready.cancelled():
            self.stop()
            raise SpawnError(f"the fork server of {self.entry} did not get ready "
                             f"({'it exited' if exited in done else 'timed out'})")
        exited.cancel()

    async def _relay(self, name: str, stream: asyncio.StreamReader) -> None:
        # The template's few lines (its ready event, a failure before a child existed):
        # logged as data under its own event, escaped by the JSON renderer.
        with contextlib.suppress(ValueError, OSError):
            while line := await stream.readline():
                log.get_logger().info("fork_server.output", entry=self.entry,
                                      stream=name, line=line.decode(errors="replace")[:2000])

    def _readable(self) -> None:
        assert self.sock is not None
        while True:
            try:
                message = fork_wire.receive(self.sock)
            except BlockingIOError:
                return
            except (OSError, ValueError):
                message = None
            if message is None:
                self._lost()
                return
            self._dispatch(message)

    def _dispatch(self, message: fork_wire.Message) -> None:
        fields = message.fields
        if message.op == "ready" and not self.ready.done():
            self.ready.set_result(int(fields["pid"]))
        elif message.op == "spawned" and message.fds:
            waiter = self._pending.pop(int(fields["id"]), None)
            if waiter is not None and not waiter.done():
                waiter.set_result((int(fields["pid"]), message.fds[0]))
                return
            # A spawn we gave up on (timed out): the child is ours all the same, so it
            # is killed and reaped rather than left running unsupervised.
            stray = _ForkedChild(int(fields["pid"]), message.fds[0], (), {})
            stray.send_signal(signal.SIGKILL)
            stray.close()  # its pidfd goes once it is reaped
            return
        elif message.op == "failed":
            waiter = self._pending.pop(int(fields["id"]), None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(SpawnError(f"fork server: {fields.get('error')}"))
        for fd in message.fds:
            os.close(fd)

    def _lost(self) -> None:
        if self._gone:
            return
        self._gone = True
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(SpawnError(f"the fork server of {self.entry} exited"))
        if not self.ready.done():
            self.ready.cancel()
        elif not self.ready.cancelled():
            self._on_lost()

    async def spawn(self, request: LaunchRequest, plan_fd: int,
                    cgroup_fds: tuple[int, ...],
                    intro: tuple[str, int] | None = None) -> Endpoint:
        """Fork one child for ``request``; ``intro`` is (environment variable, fd) of the
        child's introduction channel, passed along and named to it under its own number.
        Raises SpawnError (the template is gone or refused); then nothing is left open."""
        if self.sock is None:
            raise SpawnError(f"the fork server of {self.entry} is not running")
        loop = asyncio.get_running_loop()
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pipes = [os.pipe2(os.O_CLOEXEC) for _ in range(2)]
        ident = next(self._ids)
        waiter: asyncio.Future[tuple[int, int]] = loop.create_future()
        self._pending[ident] = waiter
        try:
            extra = (intro[1],) if intro is not None else ()
            fork_wire.send(self.sock, "spawn",
                           (child_end.fileno(), pipes[0][1], pipes[1][1], plan_fd, *extra,
                            *cgroup_fds),
                           id=ident, argv=list(request.argv), env=dict(request.env),
                           intro_env=intro[0] if intro is not None else None)
            pid, pidfd = await asyncio.wait_for(waiter, SPAWN_TIMEOUT_S)
        except BaseException as exc:
            self._pending.pop(ident, None)
            parent_end.close()
            for r, _ in pipes:
                os.close(r)
            if isinstance(exc, TimeoutError):
                self.kill()  # hung: its link closes and the owner restarts it
                raise SpawnError(f"the fork server of {self.entry} did not answer within "
                                 f"{SPAWN_TIMEOUT_S:g} s") from exc
            if isinstance(exc, OSError):
                raise SpawnError(f"the fork server of {self.entry}: {exc}") from exc
            raise
        finally:
            child_end.close()
            for _, w in pipes:
                os.close(w)
        output = {}
        for name, (r, _) in zip(("stdout", "stderr"), pipes, strict=True):
            reader = asyncio.StreamReader(limit=_STREAM_LIMIT)
            await loop.connect_read_pipe(lambda reader=reader:  # type: ignore[misc]
                                         asyncio.StreamReaderProtocol(reader),
                                         os.fdopen(r, "rb", buffering=0))
            output[name] = reader
        argv = tuple(a.replace("{fd}", "?") for a in request.argv)
        return Endpoint(sock=parent_end, child=_ForkedChild(pid, pidfd, argv, output))

    def kill(self) -> None:
        """Kill a hung template; its link closes and ``on_lost`` restarts it."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
        self._lost()

    def stop(self) -> None:
        """Close the link and kill the template (its children, ours, stay)."""
        self._on_lost = _nothing
        self._lost()
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
        for task in self._tasks:
            task.cancel()

    async def reap(self) -> None:
        """Wait for the stopped template to be reaped. Never raises."""
        if self.process is not None:
            await self.process.wait()
            self.process.close()


def _nothing() -> None:
    return


class ForkServers:
    """One template per (role entry point, network or not), started on first use and
    started again as soon as it dies. While one is (re)starting, ``get`` returns None and
    the caller starts that child cold."""

    def __init__(self) -> None:
        self._templates: dict[tuple[str, bool], _Template] = {}
        self._starting: dict[tuple[str, bool], asyncio.Task[_Template | None]] = {}
        self._failed_at: dict[tuple[str, bool], float] = {}
        self._closing = False

    async def get(self, entry: str, *, network: bool) -> _Template | None:
        """A ready template for ``entry``: the running one; on first use, one started now
        (awaited); None while one restarts or after one failed to start (logged; not
        retried for ``_RETRY_AFTER_S``). Never raises."""
        key = (entry, network)
        current = self._templates.get(key)
        if current is not None and current.alive:
            return current
        if self._closing or key in self._starting:
            return None
        loop = asyncio.get_running_loop()
        if loop.time() - self._failed_at.get(key, -_RETRY_AFTER_S) < _RETRY_AFTER_S:
            return None
        task = self._start(key)
        return await asyncio.shield(task) if current is None else None

    def _start(self, key: tuple[str, bool]) -> asyncio.Task[_Template | None]:
        task = asyncio.get_running_loop().create_task(self._run_start(key))
        self._starting[key] = task
        task.add_done_callback(lambda _: self._starting.pop(key, None))
        return task

    async def _run_start(self, key: tuple[str, bool]) -> _Template | None:
        entry, network = key
        previous = self._templates.pop(key, None)
        if previous is not None:
            previous.stop()
            await previous.reap()
        template = _Template(entry, network, on_lost=lambda: self._on_lost(key))
        try:
            await template.start()
        except (SpawnError, OSError) as exc:
            self._failed_at[key] = asyncio.get_running_loop().time()
            log.get_logger().error("fork_server.unavailable", entry=entry, error=str(exc))
            return None
        if self._closing:
            template.stop()
            await template.reap()
            return None
        self._templates[key] = template
        log.get_logger().info("fork_server.started", entry=entry, pid=template.pid,
                              restarted=previous is not None)
        return template

    def _on_lost(self, key: tuple[str, bool]) -> None:
        """A template's link closed: restart it now, not at the next spawn."""
        template = self._templates.get(key)
        if template is None or self._closing or key in self._starting:
            return
        code = template.process.returncode if template.process is not None else None
        log.get_logger().warning("fork_server.exited", entry=key[0], pid=template.pid,
                                 exit_code=code)
        self._start(key)

    async def close(self) -> None:
        """Stop every template and reap it. Never raises."""
        self._closing = True
        for task in list(self._starting.values()):
            task.cancel()
        await asyncio.gather(*self._starting.values(), return_exceptions=True)
        for template in self._templates.values():
            template.stop()
            await template.reap()
        self._templates.clear()
