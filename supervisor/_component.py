"""One supervised component: spawn, bootstrap, broker, watch, stop, restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bitcoin_supervisor.interfaces import ComponentSettings, IpcError, SpawnError, SupervisorError
from bitcoin_supervisor.ipc import ChildHandle, Connection, Endpoint, Protocol
from bitcoin_supervisor.log import get_logger
from bitcoin_supervisor.sandbox import Confinement, find_violation, policy_for

from ._broker import Broker
from ._config import ComponentConfig
from ._launcher import ComponentLauncher, LaunchSpec
from ._restart import RestartTracker
from ._state import EX_CONFIG, ComponentState, ExitReason, StateMachine, classify_exit

BOOTSTRAP_TIMEOUT_S = 30.0
EXIT_GRACE_S = 1.0
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


class Component:
    """Runs one configured component for the daemon's lifetime.

    ``run()`` is the component's own task; the daemon talks to it only through
    ``request_start``/``request_stop``/``request_restart`` and the read-only properties.
    """

    def __init__(self, config: ComponentConfig, *, launcher: ComponentLauncher,
                 protocol: Protocol,
                 broker: Broker, dependencies: list[Component], debug: tuple[str, ...],
                 datadirs: Mapping[str, str], on_change: Callable[[], None]) -> None:
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
        self._tracker = RestartTracker(config.restart)
        self._on_change = on_change
        self._wanted = True
        self._start_pending = False
        self._wake = asyncio.Event()
        self._stop_now = asyncio.Event()
        self._waiters: list[tuple[Callable[[Component], bool], asyncio.Future[None]]] = []
        self._child: ChildHandle | None = None
        self._run: tuple[LaunchSpec, Endpoint] | None = None
        self.confinement: Confinement | None = None
        self._stop_reason = ExitReason.STOPPED_BY_USER
        self._killed = False
        self._last_line: str | None = None
        self._started_at: float | None = None
        self._log = get_logger(component=config.name)

    # -- read side -------------------------------------------------------------------
    @property
    def state(self) -> ComponentState:
        """The detailed state."""
        return self.machine.state

    @property
    def pid(self) -> int | None:
        """The running process's pid, or None."""
        return self._child.pid if self._child is not None else None

    def uptime_s(self) -> float | None:
        """Seconds since the component became RUNNING, or None when it is not running."""
        if self.state is not ComponentState.RUNNING or self._started_at is None:
            return None
        return time.monotonic() - self._started_at

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

    # -- commands --------------------------------------------------------------------
    def request_start(self) -> None:
        """Want the component running again; clears the start limit (user's decision)."""
        self._tracker.reset()
        self._stop_reason = ExitReason.STOPPED_BY_USER
        self._wanted = True
        self._start_pending = True
        self._wake.set()

    async def request_stop(self, reason: ExitReason = ExitReason.STOPPED_BY_USER) -> None:
        """Stop the component (SIGTERM, then SIGKILL after its timeout); returns when down.
        ``reason`` is what status shows afterwards (the user, or the daemon's shutdown)."""
        self._stop_reason = reason
        self._wanted = False
        self._start_pending = False  # a start still waiting to begin is overridden
        self._stop_now.set()
        self._wake.set()
        self._check_waiters()
        await self.wait_until(lambda c: c.state in (ComponentState.STOPPED, ComponentState.FAILED))

    async def request_restart(self) -> None:
        """Stop then start again as one operation; returns once it is running or failed."""
        await self.request_stop()
        self.request_start()
        await self.wait_until(Component._settled)

    def _settled(self) -> bool:
        """True once a start attempt has come to rest (running, failed, or given up)."""
        if self._start_pending:  # the asked-for attempt has not begun yet
            return False
        return (self.state in (ComponentState.RUNNING, ComponentState.FAILED)
                or (self.state is ComponentState.STOPPED and not self._wanted))

    # -- the component's own task ----------------------------------------------------
    async def run(self) -> None:
        """Keep the component in its wanted state until cancelled by the daemon."""
        while True:
            if not self._wanted:
                await self._wake.wait()
                self._wake.clear()
                continue
            self._stop_now.clear()
            self._start_pending = False
            if not await self._wait_for_dependencies():
                continue
            delay = await self._run_once()
            if delay is not None:
                await self._backoff(delay)

    @property
    def wanted(self) -> bool:
        """Whether the component should be running (False after stop or a final failure)."""
        return self._wanted

    async def _wait_for_dependencies(self) -> bool:
        """Wait until every dependency runs; False (and a settled state) when a stop
        came meanwhile or a dependency will not come back without a user action."""
        for dep in self._deps:
            waiter = asyncio.create_task(dep.wait_until(
                lambda c: c.state is ComponentState.RUNNING or not c.wanted))
            stopper = asyncio.create_task(self._stop_now.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            if self._stop_now.is_set():
                if self.state not in (ComponentState.STOPPED, ComponentState.FAILED):
                    self._set(ComponentState.STOPPED, self._stop_reason)
                return False
            if dep.state is not ComponentState.RUNNING:
                self._log.warning("component.dependency_down", dependency=dep.name,
                                  dependency_state=dep.state.value)
                self._wanted = False
                if self.state is ComponentState.FAILED:  # the table has no FAILED -> FAILED
                    self._set(ComponentState.STOPPED, self.machine.reason)
                self._set(ComponentState.FAILED, ExitReason.DEPENDENCY)
                return False
        return True

    def _spec(self) -> LaunchSpec:
        return LaunchSpec(name=self.name, argv=self.config.argv, env=self._child_env(),
                          datadir=Path(self.settings.datadir), policy=self.policy)

    def usage(self) -> dict[str, int] | None:
        """The running process tree's resource usage (its cgroup), None when not running
        or unknown. Blocking cgroupfs reads: call from an executor. Never raises."""
        run = self._run
        return self._launcher.usage(run[1]) if run is not None else None

    async def _run_once(self) -> float | None:
        """Launch, bootstrap, verify and watch one process; return a restart delay or None."""
        self._set(ComponentState.STARTING, ExitReason.NONE)
        self._tracker.record_start()
        self._killed = False
        self._last_line = None
        self.confinement = None
        spec = self._spec()
        try:
            endpoint = await self._launcher.launch(spec)
        except SpawnError as exc:
            self._log.error("component.spawn_failed", error=str(exc))
            self._wanted = False
            self.last_exit = ExitInfo(None, None, ExitReason.SPAWN_FAILED, time.time(),
                                      str(exc))
            self._set(ComponentState.FAILED, ExitReason.SPAWN_FAILED)
            return None
        child = endpoint.child
        self._child = child
        self._run = (spec, endpoint)
        drains = [asyncio.create_task(self._drain(child, name, stream))
                  for name, stream in child.output.items()]
        self._log.info("component.spawned", pid=child.pid, argv=list(child.argv))
        connection = await self._bootstrap(endpoint)
        inner: list[int] = []
        unconfined: Confinement | None = None
        if connection is not None:
            confinement = await self._launcher.verify(spec, endpoint)
            self.confinement = confinement
            if confinement.state == "violated":
                unconfined = confinement
                self._log.error("sandbox.violated", pid=child.pid,
                                problems=list(confinement.problems))
                self._stop_now.set()
            else:
                self._log.info("sandbox.verified", pid=child.pid, state=confinement.state,
                               observed=confinement.facts)
                self._started_at = time.monotonic()
                inner = _descendants(child.pid)
                self._set(ComponentState.RUNNING, ExitReason.NONE)
                await self._watch(child, connection)
        returncode = await self._ensure_stopped(spec, endpoint)
        await self._launcher.release(spec, endpoint)
        self._run = None
        detail = None
        if returncode == -signal.SIGSYS:
            detail = await self._violation(child.pid, inner)
        await asyncio.gather(*drains, return_exceptions=True)
        self._broker.detach(self.name)
        if connection is not None:
            connection.close()
        child.close()
        self._child = None
        self._started_at = None
        if unconfined is not None:
            self._refuse_unconfined(returncode, child.pid, unconfined)
            return None
        if detail is None and connection is None and self._last_line:
            detail = self._last_line  # a start that failed: its last words say why
        return self._after_exit(returncode, child.pid, bootstrapped=connection is not None,
                                detail=detail)

    def _refuse_unconfined(self, returncode: int, pid: int, confinement: Confinement) -> None:
        """The process was not confined as its policy says: it was killed and stays down."""
        self._stop_now.clear()
        self._wanted = False
        code = returncode if returncode >= 0 else None
        sig = -returncode if returncode < 0 else None
        detail = "confinement not as planned: " + "; ".join(confinement.problems)
        self.last_exit = ExitInfo(code, sig, ExitReason.UNCONFINED, time.time(), detail)
        self._log.info("component.exited", pid=pid, exit_code=code,
                       signal=signal.Signals(sig).name if sig else None,
                       reason=ExitReason.UNCONFINED.value)
        self._set(ComponentState.FAILED, ExitReason.UNCONFINED)

    async def _violation(self, pid: int, inner: list[int]) -> str:
        """Say which syscall the sandbox killed the component for (kernel audit log)."""
        loop = asyncio.get_running_loop()
        syscall = await loop.run_in_executor(None, find_violation, [pid, *inner])
        detail = "killed by sandbox: " + (
            f"syscall {syscall}" if syscall
            else "SIGSYS (the kernel log names no syscall: unreadable or rate-limited)")
        self._log.error("sandbox.violation", pid=pid, syscall=syscall, detail=detail)
        return detail

    async def _bootstrap(self, endpoint: Endpoint) -> Connection | None:
        """Connect to the child's Init and broker it; None if that failed or a stop came."""
        child = endpoint.child

        async def connect_and_attach() -> Connection:
            connection = await self._protocol.connect(endpoint.sock, peer=self.name,
                                                      debug="ipc" in self._debug)
            try:
                await self._broker.attach(self.name, connection.init)
            except BaseException:
                connection.close()
                raise
            return connection

        task = asyncio.create_task(connect_and_attach())
        stopper = asyncio.create_task(self._stop_now.wait())
        exited = asyncio.create_task(child.wait())
        done, _ = await asyncio.wait({task, stopper, exited}, timeout=BOOTSTRAP_TIMEOUT_S,
                                     return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        exited.cancel()
        if task.done() and not task.cancelled() and task.exception() is None:
            return task.result()
        if not done:
            self._log.error("component.bootstrap_failed", pid=child.pid,
                            error=f"no Init within {BOOTSTRAP_TIMEOUT_S:.0f} s")
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except (IpcError, SupervisorError) as exc:
            self._log.error("component.bootstrap_failed", pid=child.pid, error=str(exc))
        except Exception:  # noqa: BLE001 - loop boundary: any failure here is a failed start
            self._log.exception("component.bootstrap_failed", pid=child.pid)
        return None

    async def _watch(self, child: ChildHandle, connection: Connection) -> None:
        waits = {
            asyncio.create_task(child.wait(), name="exit"),
            asyncio.create_task(connection.wait_disconnected(), name="link"),
            asyncio.create_task(self._stop_now.wait(), name="stop"),
        }
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if any(t.get_name() == "link" for t in done) and child.returncode is None:
            self._log.warning("component.link_lost", pid=child.pid)

    async def _ensure_stopped(self, spec: LaunchSpec, endpoint: Endpoint) -> int:
        """Return the child's returncode, terminating it first if it still runs: SIGTERM,
        then after the stop timeout the whole process tree through its cgroup."""
        child = endpoint.child
        if child.returncode is not None:
            return child.returncode
        if not self._stop_now.is_set():
            # The link broke on its own: the process is most likely exiting already
            # (a sandboxed role's waiter follows its child within milliseconds).
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(child.wait(), timeout=EXIT_GRACE_S)
        self._set(ComponentState.STOP_SIGTERM, self.machine.reason)
        child.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(child.wait(), timeout=self.config.stop_timeout_s)
        except TimeoutError:
            self._set(ComponentState.STOP_SIGKILL, self.machine.reason)
            self._killed = True
            await self._launcher.kill(spec, endpoint)
            return await child.wait()

    def _after_exit(self, returncode: int, pid: int, *, bootstrapped: bool,
                    detail: str | None) -> float | None:
        code = returncode if returncode >= 0 else None
        sig = -returncode if returncode < 0 else None
        requested = self._stop_now.is_set() or not self._wanted
        decision = self._tracker.decide(
            code, sig, requested,
            failure=None if bootstrapped or code == EX_CONFIG or detail
            else ExitReason.BOOTSTRAP_FAILED)
        if requested:
            # A stop that needed SIGKILL says so; else whoever asked for it (user, shutdown).
            reason = ExitReason.TIMEOUT if self._killed else self._stop_reason
        else:
            reason = classify_exit(code, sig)
        if not bootstrapped and not requested and code != EX_CONFIG and detail is None:
            reason = ExitReason.BOOTSTRAP_FAILED
        self.last_exit = ExitInfo(code, sig, reason, time.time(), detail)
        self._log.info("component.exited", pid=pid, exit_code=code,
                       signal=signal.Signals(sig).name if sig else None, reason=reason.value)
        if not decision.restart and not requested:
            self._wanted = False
        self._set(decision.next_state, reason if requested else decision.reason)
        return decision.delay_s if decision.restart else None

    async def _backoff(self, delay: float) -> None:
        try:
            await asyncio.wait_for(self._stop_now.wait(), timeout=delay)
        except TimeoutError:
            self.restarts += 1
            self._log.info("component.restarting", restarts=self.restarts, delay_s=delay)
            return
        self._set(ComponentState.STOPPED, self._stop_reason)

    def _set(self, state: ComponentState, reason: ExitReason) -> None:
        self.machine.set_state(state, reason)
        self._on_change()
        self._check_waiters()

    def _check_waiters(self) -> None:
        # Called at each transition itself, so no waiter can miss a short-lived state.
        for predicate, waiter in list(self._waiters):
            if not waiter.done() and predicate(self):
                waiter.set_result(None)

    def _child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in _PASSED_ENV}
        env.update(self.settings.to_env())
        # Its own HOME, always: without one, Python's site module asks NSS for the home
        # directory, and nss-systemd (named in the node's visible nsswitch.conf) loads
        # libcap, whose constructor calls prctl — which the role's filter kills.
        env["HOME"] = self.settings.datadir
        env["PYTHONUNBUFFERED"] = "1"
        return env

    async def _drain(self, child: ChildHandle, which: str,
                     stream: asyncio.StreamReader) -> None:
        """Forward the child's output lines as log events; never let the pipe fill up."""
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # beyond the stream limit: readline already dropped it
                self._log.warning("component.output_dropped", pid=child.pid, stream=which,
                                  why="line longer than the stream limit")
                continue
            if not line:
                return
            self._log_child_line(child.pid, which, line.decode(errors="replace").rstrip("\n"))

    def _log_child_line(self, pid: int, which: str, text: str) -> None:
        try:
            event: Mapping[str, Any] = json.loads(text)
        except (ValueError, RecursionError):  # not JSON (or absurdly nested): log raw
            event = {}
        if isinstance(event, dict) and "event" in event:
            fields = {k: v for k, v in event.items() if k not in ("event", "timestamp", "level")}
            fields.setdefault("component", self.name)
            fields["pid"] = pid
            level = str(event.get("level", "info"))
            emit = getattr(self._log, level if level in ("debug", "info", "warning", "error",
                                                         "critical") else "info")
            emit(str(event["event"]), **{k: v for k, v in fields.items() if k != "component"})
            if which == "stderr" and level in ("error", "critical"):
                self._last_line = f"{event['event']}: {event.get('error', '')}"[:300]
        elif text:
            self._log.info("component.output", pid=pid, stream=which, line=text)
            if which == "stderr":
                self._last_line = text[:300]


def _descendants(pid: int) -> list[int]:
    """Pids below ``pid`` (a sandboxed role's waiter has the role itself as its child)."""
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []
