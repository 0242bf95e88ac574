"""One process run of a component: launch, bootstrap, verify, watch, stop, and how it ended.

A ``ProcessRun`` lives exactly as long as one process: ``Component`` makes a fresh one for
every start, tells it to ``stop()`` when a job says so, and reads the ``RunEnd`` it
returns. The run owns everything tied to that process (its endpoint, the IPC connection,
the output drains, the cgroup through the launcher) and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bitcoin_supervisor.interfaces import IpcError, SpawnError, SupervisorError
from bitcoin_supervisor.ipc import ChildHandle, Connection, Endpoint, ForeignInit, Protocol, Schema
from bitcoin_supervisor.sandbox import Confinement, find_violation, unnamed_reason

from ._broker import Broker
from ._configipc import HealthConfig
from ._launcher import ComponentLauncher, LaunchSpec
from ._relay import ChildLogRelay
from ._state import ComponentState, ExitReason
from ._tree import ProcessTree

__all__ = ["RunEnd", "RunTimeouts", "ProcessRun"]

NO_HEALTH_CHECK = HealthConfig()


@dataclass(frozen=True)
class RunTimeouts:
    """How long a run waits: for Init, for an exit after the link broke, after SIGTERM."""

    bootstrap_s: float = 30.0
    exit_grace_s: float = 1.0
    stop_s: float = 10.0


@dataclass(frozen=True)
class RunEnd:
    """How one run ended. ``returncode`` is None when no process was started (then
    ``failure`` is SPAWN_FAILED). ``failure`` names a start that did not get going
    (SPAWN_FAILED, BOOTSTRAP_FAILED, UNCONFINED), or a run that was up and had to be
    ended (LINK_LOST, WATCHDOG); None when the process ended by itself or on request.
    ``requested``: it ended because ``stop()`` was called; ``killed``: that stop needed
    SIGKILL. ``detail`` is the human reason (sandbox kill, last stderr line, ...);
    ``said`` the program's own last output line, if any."""

    pid: int | None
    returncode: int | None
    failure: ExitReason | None
    requested: bool
    killed: bool
    detail: str | None
    said: str | None = None


class ProcessRun:
    """Drives one process from launch to reaped; ``execute`` once, ``stop`` any time."""

    def __init__(self, spec: LaunchSpec, *, launcher: ComponentLauncher, protocol: Protocol,
                 broker: Broker, debug_ipc: bool, timeouts: RunTimeouts,
                 on_state: Callable[[ComponentState], None], log: Any,
                 relay: ChildLogRelay,
                 schema: Schema | ForeignInit = "bitcoin-supervisor",
                 health: HealthConfig = NO_HEALTH_CHECK, standby: bool = False) -> None:
        self.spec = spec
        self._launcher = launcher
        self._protocol = protocol
        self._broker = broker
        self._debug_ipc = debug_ipc
        self._timeouts = timeouts
        self._on_state = on_state
        self._log = log
        self._relay = relay
        self._schema: Schema | ForeignInit = schema
        self._health = health
        self._start_error: str | None = None  # why the link or Init did not come up
        self._signalled = False  # we sent SIGTERM (the process did not end by itself)
        self._stop = asyncio.Event()
        self._endpoint: Endpoint | None = None
        self.confinement: Confinement | None = None
        self.started_at: float | None = None  # monotonic, once RUNNING
        self._last_line: str | None = None
        self._launched_at: float | None = None
        # perf_counter marks of this run's steps (the restart breakdown); ``previous`` is
        # the run before it: (its exit seen, its cgroup killed), None on a first start.
        self.marks: dict[str, float] = {}
        self.previous: tuple[float, float] | None = None
        self._sandbox_ms: float | None = None
        self.health_passed = 0  # health checks answered in time during this run
        self.health_ok_at: float | None = None  # monotonic, the last one
        # A standby run (roles/_standby.py) waits after its verification until ``promote``
        # (then it activates, is handed its prepared capabilities and runs as usual) or
        # until it ends; ``standby_over`` is set at either.
        self.standby = standby
        self.ready = False  # a standby verified and prepared, waiting for promotion
        self.promoted = False
        self._promote = asyncio.Event()
        self._preactivate = asyncio.Event()
        # Set when the launched process and every process below it have exited (pidfds),
        # which may be before its exit status arrives.
        self.tree_gone = asyncio.Event()
        # Its exit status read from the kernel at ``tree_gone`` (None: not known yet, or
        # it was stopped by us): the status its waiter passes on, known before that
        # waiter's own status travels back (pidfd exit info, Linux 6.15 and later).
        self.early_returncode: int | None = None
        self.standby_over = asyncio.Event()
        # Set once the process ended by itself (not stopped by us) and its whole tree is
        # gone (PID 1 of its pid namespace reaped): the component may promote a standby
        # then, before this run's cleanup. ``returncode`` says how it ended.
        self.gone = asyncio.Event()
        self.returncode: int | None = None
        self.served = asyncio.Event()  # it answered its first call (or was verified)
        self._tree: ProcessTree | None = None  # from its verification on

    @property
    def pid(self) -> int | None:
        """The launched process's pid while it exists, else None."""
        return self._endpoint.child.pid if self._endpoint is not None else None

    def stop(self) -> None:
        """Ask the run to end: SIGTERM, then the whole tree after the stop timeout. Returns
        at once; ``execute`` returns when the process is gone. Idempotent."""
        self._stop.set()

    def preactivate(self) -> None:
        """Let a ready standby open its datadir now, ahead of a promotion that is about
        to be decided: the process it replaces is gone (``tree_gone``). Returns at once;
        a standby that is then not promoted is stopped by its owner. Never raises."""
        self._preactivate.set()

    def promote(self) -> None:
        """Promote a ready standby: it activates and takes over from the process that
        died (its whole tree must be gone). Returns at once; ``execute`` carries on as
        an ordinary run. Never raises."""
        self.promoted = True
        self._promote.set()

    @property
    def signalled(self) -> bool:
        """Whether this run sent its process a signal (it did not end by itself)."""
        return self._signalled

    @property
    def stop_requested(self) -> bool:
        """Whether ``stop`` was called."""
        return self._stop.is_set()

    def usage(self) -> dict[str, int] | None:
        """Resource usage of the process tree (cgroup), None when unknown. Blocking
        cgroupfs reads: call from an executor. Never raises."""
        endpoint = self._endpoint
        return self._launcher.usage(endpoint) if endpoint is not None else None

    async def execute(self) -> RunEnd:
        """Launch, bootstrap and broker, verify the confinement, watch until the process
        ends or ``stop`` is called, then reap it and clean up. Never raises but
        CancelledError."""
        spec = self.spec
        self._launched_at = time.time()  # audit records older than this are not ours
        self.marks["launch"] = time.perf_counter()
        try:
            endpoint = await self._launcher.launch(spec)
        except SpawnError as exc:
            self._log.error("component.spawn_failed", error=str(exc))
            return RunEnd(None, None, ExitReason.SPAWN_FAILED, False, False, str(exc))
        self._endpoint = endpoint
        self.marks["launched"] = time.perf_counter()
        child = endpoint.child
        drains = [asyncio.create_task(self._drain(child, name, stream))
                  for name, stream in child.output.items()]
        self._log.info("component.spawned", pid=child.pid, argv=list(child.argv))
        connection = await self._bootstrap(endpoint)
        inner: list[int] = []
        failure = None if connection is not None else ExitReason.BOOTSTRAP_FAILED
        detail = None
        tree_watch: asyncio.Task[None] | None = None
        if connection is not None:
            confinement = await self._launcher.verify(spec, endpoint)
            self.marks["verified"] = time.perf_counter()
            self.confinement = confinement
            if confinement.state == "violated":
                failure = ExitReason.UNCONFINED
                detail = "confinement not as planned: " + "; ".join(confinement.problems)
                self._log.error("sandbox.violated", pid=child.pid,
                                problems=list(confinement.problems))
            else:
                self._log.info("sandbox.verified", pid=child.pid, state=confinement.state,
                               observed=confinement.facts)
                self._tree = ProcessTree(child.pid)
                inner = self._tree.inner
                tree_watch = asyncio.create_task(self._watch_tree())
                if self.standby:
                    failure, detail = await self._wait_as_standby(child, connection)
                if failure is None and (not self.standby or self.promoted):
                    self.started_at = time.monotonic()
                    self._on_state(ComponentState.RUNNING)
                    await self._first_call(connection, child.pid)
                    failure, detail = await self._watch(child, connection)
        self.standby_over.set()
        self.marks["exit_seen"] = time.perf_counter()
        requested = self._stop.is_set()
        # A hung process gets the check's deadline to honour SIGTERM, not the full stop
        # timeout: it already failed to answer once.
        hung = failure is ExitReason.WATCHDOG
        returncode, killed = await self._ensure_stopped(
            endpoint, force=failure is ExitReason.UNCONFINED or hung,
            stop_s=min(self._timeouts.stop_s, self._health.timeout_s) if hung else None)
        if failure is ExitReason.LINK_LOST and not self._signalled:
            failure = detail = None  # it was exiting anyway: its exit status says why
        if failure is None and not requested and not self._signalled \
                and tree_watch is not None:
            try:  # a tree left behind (its PID 1 outlived the waiter) goes with the cgroup
                await asyncio.wait_for(self.tree_gone.wait(), self._timeouts.exit_grace_s)
            except TimeoutError:
                self._log.warning("component.tree_left", pid=child.pid)
            else:
                self.returncode = returncode
                self.marks["gone"] = time.perf_counter()
                self.gone.set()
        await self._launcher.release(spec, endpoint)
        self.marks["cleaned"] = time.perf_counter()
        if tree_watch is not None:
            if not tree_watch.done():
                # Killed through its cgroup just now: the run ends when its tree is gone,
                # so that a standby promoted next never shares the datadir with it.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(tree_watch),
                                           self._timeouts.exit_grace_s)
            tree_watch.cancel()
            await asyncio.gather(tree_watch, return_exceptions=True)
        if self._tree is not None:
            self._tree.close()
        if returncode == -signal.SIGSYS:
            detail = await self._violation(child.pid, inner)
        await asyncio.gather(*drains, return_exceptions=True)
        self._relay.flush()
        if self.standby and not self.promoted:
            self._broker.discard(spec.name, connection.init if connection else None)
        elif connection is not None:
            self._broker.detach(spec.name, connection.init)
        if connection is not None:
            connection.close()
        self._endpoint = None
        if detail is None and failure is not None:
            # A start that failed: our reason and its last words, whichever there are.
            said = [self._start_error, self._last_line and f"last output: {self._last_line}"]
            detail = "; ".join(s for s in said if s) or None
        return RunEnd(child.pid, returncode, failure, requested, killed, detail,
                      self._last_line)

    async def _bootstrap(self, endpoint: Endpoint) -> Connection | None:
        """Connect to the child's Init and broker it; None if that failed or a stop came."""
        child = endpoint.child

        async def connect_and_attach() -> Connection:
            # Bind mode: waits (its own deadline) for the program to listen.
            sock = await endpoint.link()
            connection = await self._protocol.connect(sock, peer=self.spec.name,
                                                      debug=self._debug_ipc,
                                                      schema=self._schema)
            self.marks["bootstrapped"] = time.perf_counter()
            try:
                if self.standby:
                    await self._broker.prepare(self.spec.name, connection.init,
                                               intro=endpoint.intro)
                else:
                    await self._broker.attach(self.spec.name, connection.init,
                                              intro=endpoint.intro)
                self.marks["brokered"] = time.perf_counter()
            except BaseException:
                connection.close()
                raise
            return connection

        task = asyncio.create_task(connect_and_attach())
        stopper = asyncio.create_task(self._stop.wait())
        exited = asyncio.create_task(child.wait())
        timeout = self._timeouts.bootstrap_s
        if self.spec.socket is not None:
            timeout += self.spec.link_timeout_s
        done, _ = await asyncio.wait({task, stopper, exited}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        exited.cancel()
        if task.done() and not task.cancelled() and task.exception() is None:
            return task.result()
        if not done:
            self._log.error("component.bootstrap_failed", pid=child.pid,
                            error=f"no Init within {timeout:g} s")
            self._start_error = f"no Init within {timeout:g} s"
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except (IpcError, SupervisorError) as exc:
            self._log.error("component.bootstrap_failed", pid=child.pid, error=str(exc))
            self._start_error = str(exc)
        except Exception:  # noqa: BLE001 - loop boundary: any failure here is a failed start
            self._log.exception("component.bootstrap_failed", pid=child.pid)
        return None

    async def _wait_as_standby(self, child: ChildHandle, connection: Connection
                               ) -> tuple[ExitReason | None, str | None]:
        """Wait, ready, for ``promote``, the process's end, its link breaking or a stop;
        ``preactivate`` meanwhile starts the activation early. Once promoted, finish the
        activation and hand it its prepared capabilities. Returns the failure (and why)
        that ends the run, (None, None) when promoted and serving."""
        self.ready = True
        self.marks["ready"] = time.perf_counter()
        self._log.info("component.standby_ready", pid=child.pid)
        waits: set[asyncio.Task[Any]] = {
            asyncio.create_task(child.wait(), name="exit"),
            asyncio.create_task(connection.wait_disconnected(), name="link"),
            asyncio.create_task(self._stop.wait(), name="stop"),
            asyncio.create_task(self._promote.wait(), name="promote"),
            asyncio.create_task(self._preactivate.wait(), name="activate"),
        }
        activation: asyncio.Task[None] | None = None
        while True:
            done, waits = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if {t.get_name() for t in done} != {"activate"}:
                break
            self.marks["activate"] = time.perf_counter()
            activation = asyncio.create_task(self._activate(connection))
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
        self.ready = False
        self.standby_over.set()
        if not self.promoted or self._stop.is_set():
            if activation is not None:
                activation.cancel()
            why = "it exited" if child.returncode is not None else "its link broke"
            return ExitReason.LINK_LOST, f"the standby was lost before promotion: {why}"
        self.marks["promote"] = time.perf_counter()
        self.marks.setdefault("activate", self.marks["promote"])
        try:
            await (activation or self._activate(connection))
            await asyncio.wait_for(self._broker.promote(self.spec.name, connection.init),
                                   self._timeouts.bootstrap_s)
            self.marks["brokered"] = time.perf_counter()
        except (TimeoutError, IpcError, SupervisorError) as exc:
            why = str(exc) or "no answer in time"
            self._log.error("component.promotion_failed", pid=child.pid, error=why)
            self._start_error = f"promotion failed: {why}"
            return ExitReason.BOOTSTRAP_FAILED, None
        return None, None

    async def _activate(self, connection: Connection) -> None:
        await asyncio.wait_for(connection.init.activate(), self._timeouts.bootstrap_s)
        self.marks["activated"] = time.perf_counter()

    async def _watch_tree(self) -> None:
        assert self._tree is not None
        await self._tree.watch()
        self.marks["tree_gone"] = time.perf_counter()
        if not self._signalled and not self._stop.is_set():
            self.early_returncode = self._tree.returncode
        self.tree_gone.set()

    async def _first_call(self, connection: Connection, pid: int) -> None:
        """Time the first call the new process serves (its health probe) and, after a
        restart, log the whole path from the old process's exit as ``component.restored``.
        A failing probe is left to the watch. Never raises but CancelledError."""
        if self._health.check != "none":
            try:
                await asyncio.wait_for(connection.probe(self._health.check),
                                       self._health.timeout_s)
                self.marks["first_call"] = time.perf_counter()
            except (TimeoutError, IpcError, SupervisorError):
                pass
        self.served.set()
        if self.previous is None:
            return
        marks, (exit_seen, cleaned) = self.marks, self.previous
        served = marks.get("first_call", marks.get("verified"))

        def ms(start: float | None, end: float | None) -> float | None:
            return None if start is None or end is None else round((end - start) * 1000, 3)
        launch = self._launcher.timings(pid)
        self._log.info(
            "component.restored", pid=pid, total_ms=ms(exit_seen, served),
            fork_server=launch.get("fork_server"),
            steps_ms={"exit_to_cgroup_killed": ms(exit_seen, cleaned),
                      "cgroup_killed_to_launch": ms(cleaned, marks["launch"]),
                      "plan": launch.get("plan_ms"), "spawn": launch.get("spawn_ms"),
                      "sandbox_in_child": self._sandbox_ms,
                      "launched_to_init": ms(marks["launched"], marks.get("bootstrapped")),
                      "rebroker": ms(marks.get("bootstrapped"), marks.get("brokered")),
                      "verify": ms(marks.get("brokered"), marks.get("verified")),
                      "first_call": ms(marks.get("verified"), marks.get("first_call"))})

    async def _watch(self, child: ChildHandle, connection: Connection
                     ) -> tuple[ExitReason | None, str | None]:
        """Wait until the process ends, its link breaks, a health check fails or a stop
        comes; return the failure to report (and why), None for an exit or a stop."""
        waits: set[asyncio.Task[Any]] = {
            asyncio.create_task(child.wait(), name="exit"),
            asyncio.create_task(connection.wait_disconnected(), name="link"),
            asyncio.create_task(self._stop.wait(), name="stop"),
        }
        if self._health.check != "none":
            waits.add(asyncio.create_task(self._checks(connection), name="health"))
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        ended = {t.get_name(): t for t in done}
        if "exit" in ended or "stop" in ended:
            return None, None
        if "health" in ended:
            why = ended["health"].result()
            self._log.error("component.health_failed", pid=child.pid,
                            check=self._health.check, error=why)
            return ExitReason.WATCHDOG, f"health check {self._health.check!r}: {why}"
        if child.returncode is None:
            self._log.warning("component.link_lost", pid=child.pid)
        return ExitReason.LINK_LOST, "its IPC link broke while it was running"

    async def _checks(self, connection: Connection) -> str:
        """Probe the peer every interval; return (why) at the first probe that fails or
        stays unanswered past the deadline. Runs until cancelled otherwise."""
        health = self._health
        assert health.check != "none"
        while True:
            await asyncio.sleep(health.interval_s)
            try:
                await asyncio.wait_for(connection.probe(health.check), health.timeout_s)
            except TimeoutError:
                return f"no answer within {health.timeout_s:g} s"
            except (IpcError, SupervisorError) as exc:
                return str(exc)
            self.health_passed += 1
            self.health_ok_at = time.monotonic()
            if self.health_passed == 1:  # once per run: the peer answers as it should
                self._log.info("component.health_passed", pid=self.pid, check=health.check)

    async def _ensure_stopped(self, endpoint: Endpoint, *, force: bool,
                              stop_s: float | None = None) -> tuple[int, bool]:
        """The child's returncode, and whether it took a kill: SIGTERM first, then the
        whole process tree through its cgroup after the stop timeout. ``force`` (an
        unconfined or failed start) skips the grace period for a process still alive."""
        child = endpoint.child
        if child.returncode is not None:
            return child.returncode, False
        if not self._stop.is_set() and not force:
            # The link broke on its own: the process is most likely exiting already
            # (a sandboxed role's waiter follows its child within milliseconds).
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(child.wait(), self._timeouts.exit_grace_s), False
        self._on_state(ComponentState.STOP_SIGTERM)
        self._signalled = True
        child.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(
                child.wait(), timeout=self._timeouts.stop_s if stop_s is None else stop_s), False
        except TimeoutError:
            self._on_state(ComponentState.STOP_SIGKILL)
            await self._launcher.kill(self.spec, endpoint)
            return await child.wait(), True

    async def _violation(self, pid: int, inner: list[int]) -> str:
        """Say which syscall the sandbox killed the component for (kernel audit log)."""
        loop = asyncio.get_running_loop()
        syscall = await loop.run_in_executor(None, functools.partial(
            find_violation, [pid, *inner], started_at=self._launched_at))
        detail = "killed by sandbox: " + (
            f"syscall {syscall}" if syscall
            else f"SIGSYS ({unnamed_reason()})")
        self._log.error("sandbox.violation", pid=pid, syscall=syscall, detail=detail)
        return detail

    async def _drain(self, child: ChildHandle, which: str,
                     stream: asyncio.StreamReader) -> None:
        """Relay the child's output lines (as data: ``child.log``); never let the pipe
        fill up."""
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # beyond the stream limit: readline already dropped it
                self._log.warning("component.output_dropped", pid=child.pid, stream=which,
                                  why="line longer than the stream limit")
                continue
            if not line:
                return
            text = line.decode(errors="replace").rstrip("\n")
            if self._sandbox_ms is None and '"sandbox.applied"' in text:
                self._sandbox_ms = _sandbox_total(text)
            said = self._relay.relay(child.pid, which, text)
            if said is not None:
                self._last_line = said


def _sandbox_total(text: str) -> float | None:
    """The child's own ``sandbox.applied`` step total (ms), None if not that event."""
    try:
        event = json.loads(text)
        return round(sum(float(v) for v in event["steps_ms"].values()), 3)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
