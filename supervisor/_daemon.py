"""The daemon: one asyncio loop that runs the components and answers the control socket."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any, assert_never

from bitcoin_supervisor.interfaces import IpcError, SandboxError
from bitcoin_supervisor.ipc import Protocol
from bitcoin_supervisor.log import get_logger
from bitcoin_supervisor.sandbox import cgroup_summary, landlock_abi_version

from ._broker import Broker
from ._component import Component, ComponentSnapshot
from ._config import Config
from ._control import ControlServer
from ._launcher import ComponentLauncher, ConfinedLauncher
from ._locate import publish_record, retract_record
from ._notify import Notifier, watchdog_interval
from ._state import ComponentState, ExitReason, public_state
from ._uids import assign_outer_uids
from .control_protocol import (
    CONTROL_SOCKET,
    Accepted,
    ComponentReply,
    ComponentRequest,
    ComponentStatus,
    Confinement,
    ErrorCode,
    ErrorReply,
    LastExit,
    Reply,
    Request,
    RestartRequest,
    SandboxSummary,
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


def _landlock_abi() -> int | None:
    """The kernel's Landlock ABI for status; None where Landlock is absent (the sandbox
    step itself then fails closed with a clear message)."""
    try:
        return landlock_abi_version()
    except SandboxError:
        return None


class Daemon:
    """Owns the components, the broker and the control server of one running supervisor."""

    def __init__(self, config: Config, protocol: Protocol,
                 launcher: ComponentLauncher | None = None) -> None:
        self.config = config
        self._protocol = protocol
        self._launcher = launcher or ConfinedLauncher()
        self._broker = Broker(config.graph, on_stale=self._restart_stale)
        self._background: set[asyncio.Task[None]] = set()
        self._shutdown = asyncio.Event()
        self._ready_sent = False
        self._last_status = ""
        self._started = time.monotonic()
        self._landlock_abi = _landlock_abi()
        self.components: dict[str, Component] = {}
        datadirs: dict[str, str] = {c.name: str(c.datadir) for c in config.components}
        for cfg in config.components:  # dependency order
            self.components[cfg.name] = Component(
                cfg, launcher=self._launcher, protocol=protocol, broker=self._broker,
                dependencies=[self.components[d] for d in cfg.depends_on],
                debug=config.debug, datadirs=datadirs, on_change=self._on_change)
        # As root: this instance's own outer uids, not the policy files' shared ones.
        assign_outer_uids(config.datadir, self.components.values())

    @property
    def socket_path(self) -> os.PathLike[str]:
        """Where the control socket lives: ``<datadir>/supervisor.sock``."""
        return self.config.datadir / CONTROL_SOCKET

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT or ``shutdown``; stop everything; return the exit code.

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
        log.info("supervisor.started", pid=os.getpid(), config=str(self.config.path),
                 datadir=str(self.config.datadir), components=list(self.components))
        tasks = [asyncio.create_task(c.run(), name=f"component:{n}")
                 for n, c in self.components.items()]
        for task in tasks:
            task.add_done_callback(self._component_task_ended)
        interval = watchdog_interval()
        if interval is not None:
            tasks.append(asyncio.create_task(_watchdog(interval), name="watchdog"))
        try:
            await self._shutdown.wait()
            log.info("supervisor.stopping")
            _notify_systemd("STOPPING=1")
            for component in reversed(list(self.components.values())):
                await component.request_stop(ExitReason.SHUTDOWN)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await control.close()
            if record is not None:
                retract_record(record, os.getpid())
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        log.info("supervisor.stopped")
        return 0

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
        status = ", ".join(_status_word(c) for c in self.components.values())
        if status != self._last_status:
            self._last_status = status
            _notify_systemd(f"STATUS={status}")
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
        probe = await asyncio.get_running_loop().run_in_executor(
            None, _cgroup_probe, component)
        status = self._describe(component, probe)
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
        # cgroupfs reads block: one executor job for all, never on the loop itself.
        probes_job = asyncio.get_running_loop().run_in_executor(
            None, lambda: [_cgroup_probe(c) for c in chosen])
        syncs = await asyncio.gather(*(self._progress(c) for c in chosen))
        probes = await probes_job
        return StatusReply(
            supervisor=SupervisorInfo(
                pid=os.getpid(), uptime_s=round(time.monotonic() - self._started, 3),
                config=str(self.config.path), datadir=str(self.config.datadir)),
            components=tuple(self._describe(c, p, sync)
                             for c, p, sync in zip(chosen, probes, syncs, strict=True)))

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

    def _describe(self, c: Component, cgroup: dict[str, Any] | None,
                  sync: SyncProgress | None = None) -> ComponentStatus:
        snap = c.snapshot()  # one frozen read: status never sees a half-made transition
        substate, reason = snap.state.value, snap.reason.value
        if snap.degraded is not None:  # running, but what it needs is not
            substate, reason = ("waiting" if snap.waiting else "degraded"), "dependency"
        return ComponentStatus(
            name=snap.name, role=snap.role, state=public_state(snap.state).value,
            substate=substate, reason=reason, pid=snap.pid, degraded=snap.degraded,
            sync=sync,
            restarts=snap.restarts,
            uptime_s=round(snap.uptime_s, 3) if snap.uptime_s is not None else None,
            since=snap.since,
            last_exit=LastExit.from_json(snap.last_exit.to_json()) if snap.last_exit else None,
            datadir=str(snap.datadir), sandbox=self._sandbox_summary(snap, cgroup),
            **_confinement(snap))

    def _sandbox_summary(self, snap: ComponentSnapshot,
                         cgroup: dict[str, Any] | None) -> SandboxSummary | None:
        if snap.policy is None or cgroup is None:
            return None
        summary: dict[str, Any] = {**snap.policy.summary(),
                                   "landlock_abi": self._landlock_abi, "cgroup": cgroup}
        if os.geteuid() != 0:
            summary["uid"] = None  # the policy's outer uid applies only under root
        # The sandbox package reports plain dicts; reading them through the protocol's
        # record makes a drifted key fail here, loudly, not in every CLI.
        return SandboxSummary.from_json(summary)


def _status_word(c: Component) -> str:
    """One component in systemd's STATUS=: "node failed (start-limit-hit)", "wallet
    degraded (node failed (start-limit-hit))", "index active"."""
    down = c.dependency_down()
    if down is not None:
        return f"{c.name} {'waiting' if down[1] else 'degraded'} ({down[0]})"
    return (f"{c.name} {public_state(c.state).value}"
            + (f" ({c.machine.reason.value})" if c.state is ComponentState.FAILED else ""))


def _cgroup_probe(c: Component) -> dict[str, Any] | None:
    """The cgroup part of c's status: configured limits, what this host offers, usage.
    Blocking /proc and cgroupfs reads (an executor job). Never raises."""
    if c.policy is None:
        return None
    summary = cgroup_summary(c.policy)
    usage = c.usage()
    if usage is not None and c.policy.cgroup is not None:
        summary["usage"] = usage
    return summary


def _confinement(snap: ComponentSnapshot) -> dict[str, Any]:
    """What status may claim: what /proc showed at the last start, never the policy."""
    if snap.policy is None:
        return {"confinement": Confinement.NONE}
    seen = snap.confinement
    if seen is None or snap.pid is None and seen.state != "violated":
        return {"confinement": Confinement.CONFIGURED}
    if seen.state == "violated":
        return {"confinement": Confinement.VIOLATED,
                "confinement_detail": "; ".join(seen.problems)}
    facts = seen.facts
    detail = (f"pid {facts.get('pid')} uid {facts.get('uid')}, seccomp filter, "
              "no_new_privs, no capabilities"
              + (", own network namespace" if facts.get("own_network") else ""))
    return {"confinement": Confinement.ENFORCED, "confinement_detail": detail}
