"""One supervised component: its jobs, its state, and one process run at a time."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitcoin_supervisor.interfaces import ComponentSettings, SupervisorError
from bitcoin_supervisor.ipc import ForeignInit, Protocol, Schema
from bitcoin_supervisor.log import get_logger
from bitcoin_supervisor.sandbox import Confinement, DiskImage, DiskUsage, Policy, policy_for

from ._broker import Broker
from ._config import ComponentConfig
from ._configschema import ForeignSchema
from ._jobs import Job, JobKind, merge
from ._launcher import ComponentLauncher, LaunchSpec
from ._relay import ChildLogRelay
from ._restart import RestartTracker
from ._run import ProcessRun, RunEnd, RunTimeouts
from ._standby import StandbySlot, log_restored
from ._state import (
    EX_CONFIG,
    EX_TEMPFAIL,
    ComponentState,
    ExitReason,
    StateMachine,
    classify_exit,
)

# Keep the child's environment small and explicit: nothing of the operator's shell leaks.
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


@dataclass(frozen=True)
class ExitInfo:
    """How a component's process ended."""

    exit_code: int | None
    signal: int | None
    reason: ExitReason
    at: float  # wall clock
    detail: str | None = None  # e.g. "killed by sandbox: syscall socket"

    def to_json(self) -> dict[str, Any]:
        """Return the ``last_exit`` object of ``status --json``."""
        return {
            "exit_code": self.exit_code,
            "signal": signal.Signals(self.signal).name if self.signal else None,
            "reason": self.reason.value,
            "detail": self.detail,
            "at": self.at,
        }



@dataclass(frozen=True)
class ComponentSnapshot:
    """A frozen view of one component for status: the daemon reads these, never the
    component's internals."""

    name: str
    role: str | None
    state: ComponentState
    reason: ExitReason
    since: float
    pid: int | None
    restarts: int
    uptime_s: float | None
    last_exit: ExitInfo | None
    datadir: Path
    policy: Policy | None
    confinement: Confinement | None
    pending_job: str | None
    # Running while a dependency is not: what is wrong with it ("node failed
    # (start-limit-hit)") and whether it comes back by itself (then we are "waiting").
    degraded: str | None = None
    waiting: bool = False
    # While running with a health check: (check, checks passed, seconds since the last).
    health: tuple[str, int, float | None] | None = None
    # With ``standby = true``: (its pid or None while none exists, ready to promote).
    standby: tuple[int | None, bool] | None = None


class Component:
    """Runs one configured component for the daemon's lifetime.

    ``run()`` is the component's own task. Requests become jobs (at most one pending,
    merged in ``_jobs.merge``); each start is one ``ProcessRun``. The daemon talks to it
    only through ``request_start``/``request_stop``/``request_restart``, ``wait_until``
    and ``snapshot``.
    """

    def __init__(self, config: ComponentConfig, *, launcher: ComponentLauncher,
                 protocol: Protocol,
                 broker: Broker, dependencies: list[Component], debug: tuple[str, ...],
                 datadirs: Mapping[str, str], on_change: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 bootstrap_timeout_s: float | None = None,
                 images: Path | None = None) -> None:
        self.config = config
        self.name = config.name
        self.machine = StateMachine(config.name, clock=time.time)
        self.restarts = 0
        self.last_exit: ExitInfo | None = None
        self._launcher = launcher
        self._protocol = protocol
        self._broker = broker
        self._deps = dependencies
        self._debug = tuple(sorted(set(debug) | set(config.debug)))
        self.settings = ComponentSettings(
            name=self.name, role=config.role, datadir=str(config.datadir),
            debug=self._debug, options=dict(config.options), sandbox=config.sandbox,
            datadirs=dict(datadirs), providers=dict(config.consumes))
        # Resolved now so that a bad policy stops the daemon before anything is spawned.
        self.policy = policy_for(self.settings)
        self._clock = clock
        self._sleep = sleep
        self._timeouts = RunTimeouts(bootstrap_s=bootstrap_timeout_s or config.start_timeout_s,
                                     stop_s=config.stop_timeout_s)
        self._tracker = RestartTracker(config.restart, clock=clock)
        # The last run's exit seen / cgroup killed (perf_counter): the restart breakdown.
        self._previous_exit: tuple[float, float] | None = None
        self._on_change = on_change
        self._goal = True  # run it: the daemon starts every component
        self._pending: Job | None = None
        self._active: Job | None = None  # the start/restart being carried out
        self._changed = asyncio.Event()  # a job was submitted
        self._stop_reason = ExitReason.STOPPED_BY_USER
        self._waiters: list[tuple[Callable[[Component], bool], asyncio.Future[None]]] = []
        self._run: ProcessRun | None = None
        self._last_confinement: Confinement | None = None
        self._log = get_logger(component=config.name)
        self._relay = ChildLogRelay(self._log)
        # Its disk image (``images``: the daemon's images directory; None: no images).
        self.image = images / f"{config.name}.img" if images is not None else None
        self.disk = (DiskImage(self.image, config.datadir, config.disk)
                     if self.image is not None and config.disk is not None else None)
        # The warm standby (``config.standby``): its run, that run's task, the task that
        # keeps one, and the background end of a run a promotion replaced.
        self._standby = StandbySlot(
            make_run=lambda: self._make_run(standby=True), wanted=self._wants_standby,
            restart=config.restart, sleep=sleep, log=self._log)
        self._background: set[asyncio.Task[Any]] = set()
        self._replaced: ProcessRun | None = None  # the last run a promotion replaced

    # -- read side -------------------------------------------------------------------
    @property
    def state(self) -> ComponentState:
        """The detailed state."""
        return self.machine.state

    @property
    def pid(self) -> int | None:
        """The running process's pid, or None."""
        return self._run.pid if self._run is not None else None

    @property
    def confinement(self) -> Confinement | None:
        """What /proc showed of the current run (or of the last one), None if unchecked."""
        run = self._run
        if run is not None and run.confinement is not None:
            return run.confinement
        return self._last_confinement

    @property
    def wanted(self) -> bool:
        """Whether the component should be running (False after stop or a final failure)."""
        return self._goal

    def uptime_s(self) -> float | None:
        """Seconds since the component became RUNNING, or None when it is not running."""
        run = self._run
        if self.state is not ComponentState.RUNNING or run is None or run.started_at is None:
            return None
        return time.monotonic() - run.started_at

    def usage(self) -> dict[str, int] | None:
        """The running process tree's resource usage (its cgroup), None when not running
        or unknown. Blocking cgroupfs reads: call from an executor. Never raises."""
        run = self._run
        return run.usage() if run is not None else None

    def standby_usage(self) -> dict[str, int] | None:
        """The standby process tree's resource usage (its own cgroup), None without one
        or unknown. Blocking cgroupfs reads: call from an executor. Never raises."""
        return self._standby.usage()

    @property
    def standby_pid(self) -> int | None:
        """The standby process's pid while one exists, else None."""
        return self._standby.pid

    def disk_usage(self) -> DiskUsage | None:
        """What its mounted disk image holds and can hold; None without a mounted image.
        Blocking statvfs and /proc reads: call from an executor. Never raises."""
        return self.disk.usage() if self.disk is not None else None

    def check_disk(self) -> None:
        """Refuse (SupervisorError, one line) a disk budget its image cannot take: a
        smaller one, or none while the image holds its data. Blocking stat: call from an
        executor."""
        if self.disk is not None:
            self.disk.check_change()
        elif self.image is not None and self.image.exists():
            raise SupervisorError(
                f"{self.name}'s data is in its disk image {self.image}: its disk_budget "
                'cannot become "none"; keep a budget (or move the data out first)')

    def dependency_down(self) -> tuple[str, bool] | None:
        """While RUNNING, the first dependency that is not: (its state and reason as one
        line, whether it will come back by itself); None otherwise. Never blocks."""
        if self.state is not ComponentState.RUNNING:
            return None
        for dep in self._deps:
            if dep.state is not ComponentState.RUNNING:
                why = dep.machine.reason.value
                return (f"{dep.name} {dep.state.value}" + (f" ({why})" if why != "none" else ""),
                        dep.wanted)
        return None

    def snapshot(self) -> ComponentSnapshot:
        """A frozen copy of what status shows. Never blocks."""
        down = self.dependency_down()
        return ComponentSnapshot(
            name=self.name, role=self.config.role, state=self.state,
            reason=self.machine.reason, since=self.machine.changed_at, pid=self.pid,
            restarts=self.restarts, uptime_s=self.uptime_s(), last_exit=self.last_exit,
            datadir=self.config.datadir, policy=self.policy, confinement=self.confinement,
            pending_job=self._pending.kind.value if self._pending else None,
            degraded=down[0] if down else None, waiting=bool(down and down[1]),
            health=self.health(),
            standby=((self._standby.pid, self._standby.ready())
                     if self.config.standby else None))

    def health(self) -> tuple[str, int, float | None] | None:
        """While RUNNING with a health check configured: the check, how many passed in
        this run and seconds since the last one (None before the first); else None."""
        run, check = self._run, self.config.health.check
        if self.state is not ComponentState.RUNNING or run is None or check == "none":
            return None
        age = time.monotonic() - run.health_ok_at if run.health_ok_at is not None else None
        return check, run.health_passed, age

    async def wait_until(self, predicate: Callable[[Component], bool]) -> None:
        """Block until ``predicate(self)`` holds (checked at every state change)."""
        if predicate(self):
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (predicate, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        finally:
            self._waiters.remove(entry)

    def rewire(self, dependencies: list[Component]) -> None:
        """After a reload replaced some components: the objects it depends on now (the
        same names, in the same order). Never blocks."""
        self._deps = dependencies

    # -- commands --------------------------------------------------------------------
    async def request_start(self) -> None:
        """Start it (clearing a hit start limit: the user's decision); returns once the
        attempt has settled: running, failed, or superseded by a stop."""
        if self.state is ComponentState.RUNNING and self._pending is None:
            return
        await self._submit(Job(JobKind.START))

    async def request_stop(self, reason: ExitReason = ExitReason.STOPPED_BY_USER) -> None:
        """Stop it (SIGTERM, then the whole tree after its timeout); returns when down.
        ``reason`` is what status shows afterwards (the user, or the daemon's shutdown)."""
        await self._submit(Job(JobKind.STOP, reason=reason))
        await self._standby.drop()  # normally let go already, at STOPPED: wait for it
        if not self._goal and self._run is None:  # down, and no start came meanwhile
            await self._launcher.unmount(self._spec())

    async def request_restart(self) -> None:
        """Stop then start again as one job; returns once it is running or failed."""
        await self._submit(Job(JobKind.RESTART))  # its stop drops the standby (at STOPPED)

    async def _submit(self, job: Job) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        job.waiters.append(done)
        self._pending, superseded = merge(self._pending, job)
        _resolve(superseded)
        self._log.info("component.job_queued", job=job.kind.value,
                       pending=self._pending.kind.value)
        if self._pending.kind is not JobKind.START:
            self._stop_reason = (self._pending.reason if self._pending.kind is JobKind.STOP
                                 else ExitReason.STOPPED_BY_USER)
            if self._pending.kind is JobKind.STOP:
                self._goal = False  # dependents waiting on it learn at once
                self._check_waiters()
            if self._run is not None:
                self._run.stop()
        self._changed.set()
        await done

    def _interrupted(self) -> bool:
        """A pending stop or restart cuts short whatever the component is waiting for."""
        return self._pending is not None and self._pending.kind is not JobKind.START

    # -- the component's own task ----------------------------------------------------
    async def run(self) -> None:
        """Carry out jobs and keep the component in its wanted state until cancelled."""
        while True:
            job, self._pending = self._pending, None
            if job is None and not self._goal:
                self._changed.clear()
                await self._changed.wait()
                continue
            if job is not None and job.kind is JobKind.STOP:
                self._carry_out_stop(job)
                continue
            if job is not None:  # start or restart: the stop part is over by now
                _resolve(job.stop_waiters)
                if self._active is not None:  # an earlier start is absorbed by this one
                    job.waiters += self._active.waiters
                self._active = job
                self._goal = True
                self._tracker.reset()
                self._stop_reason = ExitReason.STOPPED_BY_USER
            await self._attempt()

    def _carry_out_stop(self, job: Job) -> None:
        self._goal = False
        if self.state not in (ComponentState.STOPPED, ComponentState.FAILED):
            self._set(ComponentState.STOPPED, job.reason)
        self._check_waiters()
        if self._active is not None:  # a start under way was superseded by this stop
            _resolve(self._active.waiters)
            self._active = None
        _resolve(job.waiters)

    async def _attempt(self) -> None:
        """One start: dependencies, one process run, and the backoff before the next."""
        if not await self._wait_for_dependencies() or self._interrupted():
            return
        delay = await self._run_once()
        if delay is not None:
            await self._backoff(delay)

    async def _until_changed(self, task: Awaitable[Any]) -> bool:
        """Wait for ``task`` or a pending stop/restart; True when ``task`` finished."""
        work = asyncio.ensure_future(task)
        try:
            while not work.done():
                self._changed.clear()
                if self._interrupted():
                    return False
                changed = asyncio.create_task(self._changed.wait())
                await asyncio.wait({work, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
            return True
        finally:
            work.cancel()

    async def _wait_for_dependencies(self) -> bool:
        """Wait until every dependency runs; False (and a settled state) when a stop
        came meanwhile or a dependency will not come back without a user action."""
        for dep in self._deps:
            ready = dep.wait_until(lambda c: c.state is ComponentState.RUNNING or not c.wanted)
            if not await self._until_changed(ready):
                return False
            if dep.state is not ComponentState.RUNNING:
                self._log.warning("component.dependency_down", dependency=dep.name,
                                  dependency_state=dep.state.value)
                self._goal = False
                if self.state is ComponentState.FAILED:  # the table has no FAILED -> FAILED
                    self._set(ComponentState.STOPPED, self.machine.reason)
                self._set(ComponentState.FAILED, ExitReason.DEPENDENCY)
                return False
        return True

    def _spec(self, standby: bool = False) -> LaunchSpec:
        return LaunchSpec(name=self.name, argv=self.config.argv,
                          env=self._child_env(standby),
                          datadir=Path(self.settings.datadir), policy=self.policy,
                          socket=self.config.socket,
                          link_timeout_s=self._timeouts.bootstrap_s,
                          intro=self.config.introduce,
                          fork_server=self.config.fork_server, disk=self.disk,
                          image=self.image)

    def _make_run(self, *, standby: bool) -> ProcessRun:
        def on_state(state: ComponentState) -> None:
            if self._run is run:  # a standby's or a replaced run's states are not ours
                self._on_run_state(state)
        run = ProcessRun(self._spec(standby), launcher=self._launcher,
                         protocol=self._protocol, broker=self._broker,
                         debug_ipc="ipc" in self._debug, timeouts=self._timeouts,
                         on_state=on_state, log=self._log.bind(standby=True) if standby
                         else self._log, relay=self._relay,
                         schema=_wire_schema(self.config.schema),
                         health=self.config.health, standby=standby)
        return run

    async def _run_once(self) -> float | None:
        """One process run from launch to reaped; return a restart delay or None. A
        ready standby is promoted instead of launching; when the process dies while a
        standby is ready, the delay is returned as soon as its tree is gone and the
        run's cleanup goes on in the background."""
        self._set(ComponentState.STARTING, ExitReason.NONE)
        self._tracker.record_start()
        self._last_confinement = None
        taken = self._standby.take()
        if taken is None:
            await self._standby.settled()  # one let go of may have opened the datadir
            run = self._make_run(standby=False)
            run.previous = self._previous_exit
            self._run = run
            task = asyncio.create_task(run.execute())
        else:
            run, task = taken
            self._run = run
            self._report_promotion(run, task)
        try:
            gone = asyncio.create_task(run.gone.wait())
            tree = asyncio.create_task(run.tree_gone.wait())
            done, _ = await asyncio.wait({task, gone, tree},
                                         return_when=asyncio.FIRST_COMPLETED)
            early = done == {tree} and self._standby.ready() and self._goal \
                and not self._interrupted() and not run.stop_requested and not run.signalled
            if early:
                # Its processes are gone: let the standby open its datadir while the
                # restart is decided (promoted, or stopped if it is not restarted).
                self._standby.preactivate()
            if early and run.early_returncode is None:  # the status is still on its way
                await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
            gone.cancel()
            tree.cancel()
            returncode = run.early_returncode if early else run.returncode
            if not task.done() and returncode is not None and self._standby.ready() \
                    and not self._interrupted():
                # Promote now: the old tree is gone and how it ended is known; its
                # cgroup, the rest of its output and its log wait.
                self._last_confinement = run.confinement
                end = RunEnd(run.pid, returncode, None, False, False, None)
                self._run = None
                self._background_task(self._finish(run, task, returncode))
                return self._after_exit(end)
            end = await task
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            self._run = None
        self._note_end(run)
        full = False
        if end.returncode == EX_TEMPFAIL and self.disk is not None:  # statvfs: off the loop
            usage = await asyncio.get_running_loop().run_in_executor(None, self.disk_usage)
            full = usage is not None and usage.full
        return self._after_exit(end, disk_full=full)

    def _note_end(self, run: ProcessRun) -> None:
        marks = run.marks
        self._previous_exit = ((marks["exit_seen"], marks["cleaned"])
                               if "exit_seen" in marks and "cleaned" in marks else None)
        self._last_confinement = run.confinement

    def _background_task(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _finish(self, run: ProcessRun, task: asyncio.Task[RunEnd],
                      early: int | None = None) -> None:
        """The end of a run a standby replaced: wait for its cleanup (cgroup), then add
        what only the cleanup learns (a sandbox kill) to the exit shown in status."""
        end = await task
        if early is not None and end.returncode != early:
            self._log.warning("component.exit_status_differs", pid=end.pid, early=early,
                              returncode=end.returncode)
        marks = run.marks
        self._previous_exit = ((marks["exit_seen"], marks["cleaned"])
                               if "exit_seen" in marks and "cleaned" in marks else None)
        last = self.last_exit
        if end.detail and last is not None and last.detail is None:
            self.last_exit = dataclasses.replace(last, detail=end.detail)
        self._replaced = run

    def _report_promotion(self, run: ProcessRun, task: asyncio.Task[RunEnd]) -> None:
        """Once the promoted ``run`` serves and the replaced run is cleaned up: log
        ``component.restored`` and start keeping a fresh standby."""
        replaced = list(self._background)

        async def report() -> None:
            served = asyncio.create_task(run.served.wait())
            await asyncio.wait({served, task}, return_when=asyncio.FIRST_COMPLETED)
            served.cancel()
            await asyncio.gather(*replaced, return_exceptions=True)
            if run.served.is_set():
                log_restored(self._log, self._replaced, run)
            self._ensure_keeper()
        self._background_task(report())

    # -- the warm standby -------------------------------------------------------------
    def _wants_standby(self) -> bool:
        return (self.config.standby and self._goal and not self._interrupted()
                and self.state is ComponentState.RUNNING and self._run is not None)

    def _ensure_keeper(self) -> None:
        """Keep a standby while the component runs (config ``standby``). Never blocks."""
        if self._wants_standby():
            self._standby.keep()

    def _on_run_state(self, state: ComponentState) -> None:
        self._set(state, ExitReason.NONE if state is ComponentState.RUNNING
                  else self.machine.reason)
        if state is ComponentState.RUNNING and self._run is not None and \
                not self._run.promoted:
            self._ensure_keeper()  # a promoted run's report starts it, after the cleanup

    def _after_exit(self, end: RunEnd, *, disk_full: bool = False) -> float | None:
        if end.returncode is None or end.failure is ExitReason.UNCONFINED:
            # Could not be started, or ran unconfined: never retried by itself.
            reason = end.failure or ExitReason.SPAWN_FAILED
            code, sig = _split(end.returncode)
            self.last_exit = ExitInfo(code, sig, reason, time.time(), end.detail)
            self._log.info("component.exited", pid=end.pid, exit_code=code,
                           signal=signal.Signals(sig).name if sig else None,
                           reason=reason.value)
            self._goal = False
            self._set(ComponentState.FAILED, reason)
            return None
        code, sig = _split(end.returncode)
        requested = end.requested or not self._goal or self._interrupted()
        failure, detail = end.failure, end.detail
        if code == EX_CONFIG or sig == signal.SIGSYS:
            failure = None  # boot refused / killed by the sandbox say more than "bootstrap"
        if code == EX_CONFIG and end.said:
            detail = end.said  # why it refused, in its own words, not our "link lost"
        if disk_full and not requested and self.config.restart.policy != "no":
            decision = self._tracker.waiting_for_space()
            self._log.warning("component.disk_full", why="it could not start: its datadir "
                              "is full", retry_s=decision.delay_s)
        else:
            decision = self._tracker.decide(code, sig, requested, failure=failure)
        if requested:
            # A stop that needed SIGKILL says so; else whoever asked for it (user, shutdown).
            reason = ExitReason.TIMEOUT if end.killed else self._stop_reason
        else:
            reason = failure or classify_exit(code, sig)
        self.last_exit = ExitInfo(code, sig, reason, time.time(), detail)
        self._log.info("component.exited", pid=end.pid, exit_code=code,
                       signal=signal.Signals(sig).name if sig else None, reason=reason.value)
        if not decision.restart and not requested:
            self._goal = False
        self._set(decision.next_state, reason if requested else decision.reason)
        return decision.delay_s if decision.restart else None

    async def _backoff(self, delay: float) -> None:
        """Wait ``delay`` before the next start; any new job cuts it short."""
        nap = asyncio.ensure_future(self._sleep(delay))
        try:
            while True:
                self._changed.clear()
                if self._pending is not None:
                    return
                changed = asyncio.create_task(self._changed.wait())
                await asyncio.wait({nap, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if nap.done():
                    break
        finally:
            nap.cancel()
        self.restarts += 1
        self._log.info("component.restarting", restarts=self.restarts, delay_s=delay)

    def _set(self, state: ComponentState, reason: ExitReason) -> None:
        self.machine.set_state(state, reason)
        if state in (ComponentState.STOPPED, ComponentState.FAILED):
            self._standby.let_go()  # at once: no start that follows may promote it
        if self._active is not None and state in (ComponentState.RUNNING,
                                                  ComponentState.FAILED):
            _resolve(self._active.waiters)  # the asked-for start has settled
            self._active = None
        if (state is ComponentState.RUNNING and self._pending is not None
                and self._pending.kind is JobKind.START):
            _resolve(self._pending.waiters)  # asked to start while it was starting anyway
            self._pending = None
        self._on_change()
        self._check_waiters()

    def _check_waiters(self) -> None:
        # Called at each transition itself, so no waiter can miss a short-lived state.
        for predicate, waiter in list(self._waiters):
            if not waiter.done() and predicate(self):
                waiter.set_result(None)

    def _child_env(self, standby: bool = False) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in _PASSED_ENV}
        env.update(dataclasses.replace(self.settings, standby=standby).to_env())
        # Its own HOME, always: without one, Python's site module asks NSS for the home
        # directory, and nss-systemd (named in the node's visible nsswitch.conf) loads
        # libcap, whose constructor calls prctl — which the role's filter kills.
        env["HOME"] = self.settings.datadir
        env["PYTHONUNBUFFERED"] = "1"
        return env


def _split(returncode: int | None) -> tuple[int | None, int | None]:
    """(exit code, signal) from a returncode (negative: killed by that signal)."""
    if returncode is None:
        return None, None
    return (returncode, None) if returncode >= 0 else (None, -returncode)


def _resolve(waiters: list[object]) -> None:
    for waiter in waiters:
        if isinstance(waiter, asyncio.Future) and not waiter.done():
            waiter.set_result(None)


def _wire_schema(schema: Schema | ForeignSchema) -> Schema | ForeignInit:
    """The config's schema as the IPC layer takes it (a user's: where its file is)."""
    if isinstance(schema, ForeignSchema):
        return ForeignInit(path=schema.path, file=schema.file, init=schema.init,
                           construct=schema.construct)
    return schema
