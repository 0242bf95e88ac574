"""The daemon: one asyncio loop that runs the components and answers the control socket."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from typing import assert_never

from bitcoin_supervisor.interfaces import ConsumerHealth, IpcError, SupervisorError
from bitcoin_supervisor.ipc import Protocol, resolve_executable
from bitcoin_supervisor.log import get_logger

from ._broker import Broker
from ._component import Component
from ._config import Config, load_config
from ._control import ControlServer
from ._describe import describe, landlock_abi, probe, refusal, status_word
from ._laggards import consumer_health, watch_laggards
from ._launcher import ComponentLauncher, ConfinedLauncher
from ._locate import publish_record, retract_record
from ._notify import Notifier, watchdog_interval
from ._reload import ReloadPlan, plan_reload
from ._state import ComponentState, ExitReason
from ._uids import assign_outer_uids
from .control_protocol import (
    CONTROL_SOCKET,
    Accepted,
    CapabilityLink,
    ComponentReply,
    ComponentRequest,
    ErrorCode,
    ErrorReply,
    ReloadReply,
    ReloadRequest,
    Reply,
    Request,
    RestartRequest,
    ShutdownRequest,
    StartRequest,
    StatusReply,
    StatusRequest,
    StopRequest,
    SupervisorInfo,
    SyncProgress,
)

log = get_logger()

# Status asks running consumers how far they have synced; a hung one must not hold it.
PROGRESS_TIMEOUT_S = 1.0


_notifier = Notifier()


def _notify_systemd(message: str) -> None:
    """sd_notify that never blocks the loop nor takes the daemon down (see Notifier)."""
    _notifier.send(message)


async def _watchdog(interval: float) -> None:
    """Ping systemd's watchdog from the event loop itself: if the loop ever blocks (and
    with it every brokered call), the pings stop and systemd restarts the daemon."""
    while True:
        _notify_systemd("WATCHDOG=1")
        await asyncio.sleep(interval)


class Daemon:
    """Owns the components, the broker and the control server of one running supervisor."""

    def __init__(self, config: Config, protocol: Protocol,
                 launcher: ComponentLauncher | None = None, *,
                 reload_config: Callable[[], Config] | None = None) -> None:
        self.config = config
        self._protocol = protocol
        self._launcher = launcher or ConfinedLauncher()
        # What a reload reads: by default the same file, onto the same datadir.
        # Programs are looked up again: a reload naming a missing one is refused.
        self._reload_config = reload_config or (lambda: load_config(
            self.config.path, datadir_override=str(self.config.datadir),
            resolve_program=resolve_executable))
        self._reload_lock = asyncio.Lock()
        self._reloads: set[asyncio.Task[Reply]] = set()
        self._broker = Broker(config.graph, on_stale=self._restart_stale)
        self._background: set[asyncio.Task[None]] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._shutdown = asyncio.Event()
        self._ready_sent = False
        self._last_status = ""
        self.refused: str | None = None  # why nothing could start (then run() returns 1)
        self._started = time.monotonic()
        self._landlock_abi = landlock_abi()
        self.components: dict[str, Component] = self._build(config, {})
        # As root: this instance's own outer uids, not the policy files' shared ones.
        assign_outer_uids(config.datadir, self.components.values())

    def _build(self, config: Config, keep: dict[str, Component]) -> dict[str, Component]:
        """Components for ``config`` in dependency order: those in ``keep`` as they are,
        the others new (not yet running). Raises SupervisorError (PolicyError) for a
        policy that cannot be resolved."""
        built: dict[str, Component] = {}
        datadirs: dict[str, str] = {c.name: str(c.datadir) for c in config.components}
        for cfg in config.components:  # dependency order
            built[cfg.name] = keep.get(cfg.name) or Component(
                cfg, launcher=self._launcher, protocol=self._protocol, broker=self._broker,
                dependencies=[built[d] for d in cfg.depends_on],
                debug=config.debug, datadirs=datadirs, on_change=self._on_change,
                images=config.images_dir)
        return built

    @property
    def socket_path(self) -> os.PathLike[str]:
        """Where the control socket lives: ``<datadir>/supervisor.sock``."""
        return self.config.datadir / CONTROL_SOCKET

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT or ``shutdown``; stop everything; return the exit code:
        0, or 1 when every component was refused at start (``refused`` says why in one
        line); some refused and others running keeps it running.

        Raises SupervisorError (nothing spawned) if the control socket cannot be taken,
        e.g. because another daemon runs on this datadir.
        """
        self.config.datadir.mkdir(parents=True, exist_ok=True, mode=0o700)
        control = ControlServer(self.config.datadir / CONTROL_SOCKET, self.handle,
                                group=self.config.control_group)
        await control.start()
        try:  # lets the CLI find this daemon from any directory; optional
            record = publish_record(os.getpid(), control.path, self.config.path,
                                    self.config.datadir)
        except OSError as exc:
            record = None
            log.warning("supervisor.record_failed", error=str(exc))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._shutdown.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        log.info("supervisor.started", pid=os.getpid(), config=str(self.config.path),
                 datadir=str(self.config.datadir), components=list(self.components))
        for name in self.components:
            self._run_component(name)
        interval = watchdog_interval()
        watchdog = (asyncio.create_task(_watchdog(interval), name="watchdog")
                    if interval is not None else None)
        laggards = asyncio.create_task(watch_laggards(
            lambda: self.components, self._broker, lambda: self.config.graph,
            self._restart_stale), name="laggards")
        try:
            await self._shutdown.wait()
            log.info("supervisor.stopping")
            _notify_systemd("STOPPING=1")
            for reload in list(self._reloads):  # its starts would race the stops below
                reload.cancel()
            await asyncio.gather(*self._reloads, return_exceptions=True)
            for component in reversed(list(self.components.values())):
                await component.request_stop(ExitReason.SHUTDOWN)
        finally:
            tasks = [*self._tasks.values(), laggards, *([watchdog] if watchdog else [])]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await control.close()
            await self._launcher.close()
            if record is not None:
                retract_record(record, os.getpid())
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        log.info("supervisor.stopped")
        return 0 if self.refused is None else 1

    # -- reload --------------------------------------------------------------------------
    def _reload_on_signal(self) -> None:
        """SIGHUP: the handler only enqueues the reload (its outcome is logged)."""
        self._spawn_reload()

    def _spawn_reload(self) -> asyncio.Task[Reply]:
        task = asyncio.get_running_loop().create_task(self._reload(), name="reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)
        return task

    async def reload(self) -> Reply:
        """Re-read the config and apply it: removed components stop, changed ones are
        stopped and started with their new settings, added ones start, the others keep
        their processes. Returns ReloadReply once the started ones have settled (running
        or failed), or ErrorReply(BAD_CONFIG) when the new config cannot be loaded or
        applied; then nothing was touched and the old config keeps running. Reloads run
        one at a time; systemd sees RELOADING=1 then READY=1."""
        return await self._spawn_reload()

    async def _reload(self) -> Reply:
        async with self._reload_lock:
            # MONOTONIC_USEC ties READY=1 to this reload (v253+; 252 ignores the field).
            usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            _notify_systemd(f"RELOADING=1\nMONOTONIC_USEC={usec}")
            log.info("config.reload_started", path=str(self.config.path))
            try:
                loop = asyncio.get_running_loop()
                new = await loop.run_in_executor(None, self._reload_config)
                plan = plan_reload(self.config, new)
                fresh = self._build(new, {n: self.components[n] for n in plan.unchanged})
                added = [fresh[n] for n in (*plan.added, *plan.changed)]
                assign_outer_uids(new.datadir, added)
                for comp in added:  # a budget that would lose data is refused here
                    await loop.run_in_executor(None, comp.check_disk)
            except SupervisorError as exc:
                log.error("config.reload_failed", error=str(exc))
                self._last_status = f"reload failed, previous config kept: {exc}"
                _notify_systemd(f"STATUS={self._last_status}\nREADY=1")
                return ErrorReply(ErrorCode.BAD_CONFIG,
                                  f"{exc} (reload refused; the previous config keeps running)")
            await self._apply(new, plan, fresh)
            log.info("config.reloaded", path=str(new.path), added=list(plan.added),
                     removed=list(plan.removed), changed=list(plan.changed))
            self._ready_sent = True
            self._last_status = ""
            self._on_change()
            _notify_systemd("READY=1")
            return ReloadReply(added=plan.added, removed=plan.removed, changed=plan.changed,
                               unchanged=plan.unchanged)

    async def _apply(self, new: Config, plan: ReloadPlan,
                     fresh: dict[str, Component]) -> None:
        going = set(plan.removed) | set(plan.changed)
        for name in reversed(list(self.components)):  # dependents first
            if name in going:
                await self.components[name].request_stop()
        for name in going:
            self._tasks.pop(name).cancel()
        # No await from here to the starts: status and the broker never see a mix.
        self._broker.update_graph(new.graph)
        self.config, self.components = new, fresh
        for name in plan.unchanged:
            comp = fresh[name]
            comp.rewire([fresh[d] for d in comp.config.depends_on])
        starting = [n for n in fresh if n in plan.added or n in plan.changed]
        for name in starting:
            self._run_component(name)
        await asyncio.gather(*(fresh[n].request_start() for n in starting))

    def _run_component(self, name: str) -> None:
        task = asyncio.create_task(self.components[name].run(), name=f"component:{name}")
        task.add_done_callback(self._component_task_ended)
        self._tasks[name] = task

    def _component_task_ended(self, task: asyncio.Task[None]) -> None:
        """A component's task only ends at shutdown; anything else is a bug, made loud:
        it is logged and the daemon shuts down rather than leave a component unmanaged."""
        if task.cancelled():
            return
        exc = task.exception()
        log.error("supervisor.component_task_died", task=task.get_name(),
                  error=repr(exc), exc_info=exc)
        self._shutdown.set()

    def _restart_stale(self, name: str) -> None:
        """The broker could not hand a component its provider's fresh capability: restart
        it."""
        task = asyncio.get_running_loop().create_task(self.components[name].request_restart())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_change(self) -> None:
        # systemd shows STATUS= in `systemctl status`: a component that cannot boot is
        # visible there even though READY=1 never comes.
        status = ", ".join(status_word(c) for c in self.components.values())
        if status != self._last_status:
            self._last_status = status
            _notify_systemd(f"STATUS={status}")
        if not self._ready_sent and self.refused is None:
            # Nothing will ever run without a user's fix: a daemon sitting there would
            # hide the reason in status (and under systemd, in "activating" for ever).
            self.refused = refusal(self.components.values())
            if self.refused is not None:
                log.error("supervisor.start_refused", reason=self.refused)
                _notify_systemd(f"STATUS=cannot start: {self.refused}")
                self._shutdown.set()
        if not self._ready_sent and all(c.state is ComponentState.RUNNING
                                        for c in self.components.values()):
            self._ready_sent = True
            log.info("supervisor.ready")
            _notify_systemd("READY=1")

    # -- control socket ----------------------------------------------------------------
    async def handle(self, request: Request) -> Reply:
        """Answer one control request (see ``control_protocol`` for the verbs); start,
        stop and restart answer once the component has settled."""
        match request:
            case StatusRequest(name=name):
                return await self._status(name)
            case ShutdownRequest():
                asyncio.get_running_loop().call_soon(self._shutdown.set)
                return Accepted()
            case ReloadRequest():
                return await self.reload()
            case StartRequest() | StopRequest() | RestartRequest():
                return await self._component_verb(request)
            case _:
                assert_never(request)

    async def _component_verb(self, request: ComponentRequest) -> Reply:
        component = self.components.get(request.name)
        if component is None:
            return self._unknown(request.name)
        if isinstance(request, StopRequest):
            await component.request_stop()
        elif isinstance(request, RestartRequest):
            await component.request_restart()
        else:
            await component.request_start()
        probed = await asyncio.get_running_loop().run_in_executor(None, probe, component)
        status = describe(component, probed, self._landlock_abi)
        if isinstance(request, StopRequest) or component.state is ComponentState.RUNNING:
            return ComponentReply(status)
        # "failed (start-limit-hit)", not "failed (failed)": the reason says why.
        why = status.reason if status.reason != "none" else status.substate
        return ErrorReply(ErrorCode.COMPONENT_FAILED, f"{request.name} is {status.state} "
                          f"({why})", component=status)

    def _unknown(self, name: str) -> ErrorReply:
        known = ", ".join(self.components)
        return ErrorReply(ErrorCode.UNKNOWN_COMPONENT,
                          f"unknown component {name!r}; known components: {known}")

    async def _status(self, name: str | None) -> Reply:
        if name is not None and name not in self.components:
            return self._unknown(name)
        chosen = [c for n, c in self.components.items() if name is None or n == name]
        # cgroupfs and statvfs reads block: one executor job for all, never on the loop.
        probes_job = asyncio.get_running_loop().run_in_executor(
            None, lambda: [probe(c) for c in chosen])
        syncs = await asyncio.gather(*(self._progress(c) for c in chosen))
        healths = await asyncio.gather(*(consumer_health(self._broker, c) for c in chosen))
        probes = await probes_job
        return StatusReply(
            supervisor=SupervisorInfo(
                pid=os.getpid(), uptime_s=round(time.monotonic() - self._started, 3),
                config=str(self.config.path), datadir=str(self.config.datadir)),
            components=tuple(describe(c, p, self._landlock_abi, sync, self._links(c, health))
                             for c, p, sync, health
                             in zip(chosen, probes, syncs, healths, strict=True)))

    def _links(self, c: Component, health: dict[str, ConsumerHealth]
               ) -> tuple[CapabilityLink, ...]:
        """How each capability a running consumer holds reaches it, and whether its
        provider reports it lagging (None: no report)."""
        if c.state is not ComponentState.RUNNING:
            return ()
        paths = self._broker.links(c.name)
        return tuple(CapabilityLink(
            capability=b.capability, provider=b.provider, path=paths[b.capability],
            lagging=health[b.capability].lagging if b.capability in health else None)
            for b in self.config.graph.needs(c.name) if b.capability in paths)

    async def _progress(self, c: Component) -> SyncProgress | None:
        """How far a running consumer has followed its chain; None if it consumes none,
        or if it or its provider does not answer within PROGRESS_TIMEOUT_S."""
        if c.state is not ComponentState.RUNNING:
            return None
        try:
            found = await asyncio.wait_for(self._broker.progress(c.name), PROGRESS_TIMEOUT_S)
        except (IpcError, TimeoutError):
            return None
        if found is None:
            return None
        height, tip = found
        return SyncProgress(height=height, tip=tip, synced=height is None or height >= tip)
