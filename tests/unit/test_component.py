"""Component against a fake launcher and a fake clock: jobs, runs and the interleavings
that have bitten before, deterministic and without processes.

The launcher seam (``ComponentLauncher``) and the protocol are fakes here: a child that
exits when signalled or when the test says so, a link that comes up, hangs, or breaks.
Real processes are the integration tests' job.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TypeVar

import pytest

from bitcoin_supervisor.interfaces import (
    COMPONENT_SETTINGS_ENV,
    Chain,
    Handler,
    Init,
    PeerGoneError,
)
from bitcoin_supervisor.ipc import (
    ChildHandle,
    Connection,
    Endpoint,
    Probe,
    Protocol,
    Schema,
)
from bitcoin_supervisor.sandbox import Confinement
from bitcoin_supervisor.supervisor import Broker, Component, load_config
from bitcoin_supervisor.supervisor._jobs import Job, JobKind, merge
from bitcoin_supervisor.supervisor._launcher import ComponentLauncher, LaunchSpec
from bitcoin_supervisor.supervisor._state import ComponentState, ExitReason

T = TypeVar("T")
S = ComponentState
ENFORCED = Confinement("enforced", {"pid": 7, "uid": 64102})


class FakeClock:
    """Monotonic time that moves only when the component sleeps (its backoff)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class FakeChild(ChildHandle):
    def __init__(self, pid: int, *, ignores_sigterm: bool = False) -> None:
        self._pid = pid
        self._code: int | None = None
        self._exited = asyncio.Event()
        self.signals: list[int] = []
        self.ignores_sigterm = ignores_sigterm

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def argv(self) -> tuple[str, ...]:
        return ("fake",)

    @property
    def returncode(self) -> int | None:
        return self._code

    @property
    def output(self) -> Mapping[str, asyncio.StreamReader]:
        return {}

    def exit(self, code: int) -> None:
        if self._code is None:
            self._code = code
            self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self._code is not None
        return self._code

    def send_signal(self, sig: int) -> bool:
        if self._code is not None:
            return False
        self.signals.append(sig)
        if sig != signal.SIGTERM or not self.ignores_sigterm:
            self.exit(-sig)
        return True

    def close(self) -> None:
        pass


class FakeLauncher(ComponentLauncher):
    def __init__(self, confinement: Confinement = ENFORCED) -> None:
        self.confinement = confinement
        self.children: list[FakeChild] = []
        self.launched = asyncio.Event()
        self.ignores_sigterm = False
        self.by_sock: dict[socket.socket, FakeChild] = {}
        self.standbys: list[FakeChild] = []  # launched as a standby
        self.standby_gate: asyncio.Event | None = None  # set: standby launches wait for it
        self.standby_confinement: Confinement | None = None  # what a standby shows, if set

    async def launch(self, spec: LaunchSpec) -> Endpoint:
        standby = '"standby": true' in spec.env[COMPONENT_SETTINGS_ENV]
        if standby and self.standby_gate is not None:
            await self.standby_gate.wait()
        child = FakeChild(1000 + len(self.children), ignores_sigterm=self.ignores_sigterm)
        self.children.append(child)
        if standby:
            self.standbys.append(child)
        self.launched.set()
        ours, theirs = socket.socketpair()
        theirs.close()
        self.by_sock[ours] = child
        return Endpoint(sock=ours, child=child)

    async def verify(self, spec: LaunchSpec, endpoint: Endpoint) -> Confinement:
        if self.standby_confinement is not None and endpoint.child in self.standbys:
            return self.standby_confinement
        return self.confinement

    async def kill(self, spec: LaunchSpec, endpoint: Endpoint) -> None:
        endpoint.child.send_signal(signal.SIGKILL)

    async def release(self, spec: LaunchSpec, endpoint: Endpoint) -> None:
        endpoint.sock.close()


class FakeInit(Init):
    def __init__(self) -> None:
        self.activated = 0

    async def activate(self) -> None:
        self.activated += 1


class FakeConnection(Connection):
    def __init__(self, child: FakeChild) -> None:
        self._child = child
        self._init = FakeInit()

    @property
    def init(self) -> FakeInit:
        return self._init

    async def wait_disconnected(self) -> None:
        await self._child.wait()  # the link goes with the process

    async def probe(self, kind: Probe) -> None:
        if self._child.returncode is not None:
            raise PeerGoneError("link lost")

    def close(self) -> None:
        pass


class FakeProtocol(Protocol):
    """``mode``: "up" (Init answers), "hang" (never answers), "crash" (the child dies
    during the bootstrap)."""

    def __init__(self, launcher: FakeLauncher) -> None:
        self.launcher = launcher
        self.mode = "up"

    def run(self, main: Callable[[], Awaitable[T]]) -> T:
        raise AssertionError("a Component never runs the protocol's loop itself")

    async def connect(self, sock: socket.socket, *, peer: str, debug: bool = False,
                      schema: Schema = "bitcoin-supervisor") -> Connection:
        child = self.launcher.by_sock[sock]
        if self.mode == "hang":
            await asyncio.Event().wait()
        if self.mode == "crash":
            child.exit(1)
            raise PeerGoneError(f"{peer}: link lost")
        return FakeConnection(child)

    async def serve(self, sock: socket.socket, init: Init, *, name: str,
                    debug: bool = False) -> None:
        raise AssertionError("the supervisor side never serves an Init")

    async def serve_chain(self, sock: socket.socket, chain: Chain, *, name: str,
                          peer: str, max_message_bytes: int,
                          debug: bool = False) -> Handler:
        raise AssertionError("the supervisor side never serves a Chain")

    async def connect_chain(self, sock: socket.socket, *, peer: str,
                            debug: bool = False) -> Chain:
        raise AssertionError("the supervisor never connects to an introduced Chain")


class Harness:
    def __init__(self, tmp_path: Path, *, restart: str = "on-failure",
                 dependency: bool = False, standby: bool = False) -> None:
        path = tmp_path / "c.toml"
        dep = '\n[components.base]\nargv = ["/bin/true", "{fd}"]\nsandbox = "none"\n'
        path.write_text(f"""
[supervisor]
datadir = "{tmp_path / 'data'}"
{dep if dependency else ""}
[components.calc]
argv = ["/bin/true", "{{fd}}"]
sandbox = "wallet"
{'depends_on = ["base"]' if dependency else ""}
stop_timeout_s = 0.05
[components.calc.restart]
policy = "{restart}"
backoff_initial_s = 1.0
backoff_max_s = 8.0
start_limit_burst = 50
""")
        config = load_config(path)
        self.clock = FakeClock()
        self.launcher = FakeLauncher()
        self.protocol = FakeProtocol(self.launcher)
        broker = Broker(config.graph)
        self.states: list[ComponentState] = []
        built: dict[str, Component] = {}
        for cfg in config.components:
            if standby and cfg.name == "calc":
                # The config allows a standby only for wallets and indexes; the state
                # machine is the same for any component.
                cfg = dataclasses.replace(cfg, standby=True)
            built[cfg.name] = Component(
                cfg, launcher=self.launcher, protocol=self.protocol, broker=broker,
                dependencies=[built[d] for d in cfg.depends_on], debug=(),
                datadirs={c.name: str(c.datadir) for c in config.components},
                on_change=self._changed, clock=self.clock, sleep=self.clock.sleep,
                bootstrap_timeout_s=0.05)
        self.comp = built["calc"]
        self.base = built.get("base")
        self.tasks: list[asyncio.Task[None]] = []

    def _changed(self) -> None:
        if self.states[-1:] != [self.comp.state]:
            self.states.append(self.comp.state)

    def start(self) -> None:
        for comp in (self.base, self.comp):
            if comp is not None:
                self.tasks.append(asyncio.create_task(comp.run()))

    async def until(self, state: ComponentState) -> None:
        await asyncio.wait_for(self.comp.wait_until(lambda c: c.state is state), 5)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def scenario(test: Callable[[Harness], Awaitable[None]], tmp_path: Path,
             **kw: object) -> None:
    async def main() -> None:
        harness = Harness(tmp_path, **kw)  # type: ignore[arg-type]
        try:
            await test(harness)
        finally:
            await harness.close()
    asyncio.run(main())


# -- the job table ---------------------------------------------------------------------

_K = JobKind
_MERGED = {  # (pending, new) -> pending afterwards, and whether earlier waiters wake now
    (_K.START, _K.START): (_K.START, False), (_K.START, _K.STOP): (_K.STOP, True),
    (_K.START, _K.RESTART): (_K.RESTART, False), (_K.STOP, _K.START): (_K.RESTART, False),
    (_K.STOP, _K.STOP): (_K.STOP, False), (_K.STOP, _K.RESTART): (_K.RESTART, False),
    (_K.RESTART, _K.START): (_K.RESTART, False), (_K.RESTART, _K.STOP): (_K.STOP, True),
    (_K.RESTART, _K.RESTART): (_K.RESTART, False),
}


@pytest.mark.parametrize(("old", "new"), list(_MERGED))
def test_every_pair_of_jobs_merges_into_one(old: JobKind, new: JobKind) -> None:
    first, second = object(), object()
    kept, woken = merge(Job(old, [first]), Job(new, [second]))
    kind, superseded = _MERGED[(old, new)]
    assert kept.kind is kind
    assert woken == ([first] if superseded else [])
    everyone = kept.waiters + kept.stop_waiters + woken
    assert sorted(map(id, everyone)) == sorted(map(id, [first, second]))  # nobody lost
    if (old, new) == (_K.STOP, _K.START):
        assert kept.stop_waiters == [first]  # woken once the stop part is done


def test_a_shutdown_stop_keeps_its_reason_when_merged() -> None:
    kept, _ = merge(Job(_K.STOP), Job(_K.STOP, reason=ExitReason.SHUTDOWN))
    assert kept.reason is ExitReason.SHUTDOWN


# -- interleavings ---------------------------------------------------------------------

def test_a_component_not_confined_as_planned_is_killed_and_stays_down(
        tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        h.launcher.confinement = Confinement("violated", {"pid": 7},
                                             ("pid 7: Seccomp 0 (want 2: filter)",))
        h.start()
        await h.until(S.FAILED)
        assert S.RUNNING not in h.states  # never claimed to run
        assert h.comp.machine.reason is ExitReason.UNCONFINED
        assert h.comp.last_exit is not None and "Seccomp 0" in (h.comp.last_exit.detail or "")
        assert not h.comp.wanted  # "always" does not restart an unconfined program
        assert len(h.launcher.children) == 1
        assert h.launcher.children[0].signals[:1] == [signal.SIGTERM]
    scenario(test, tmp_path, restart="always")


def test_shutdown_and_status_keep_what_was_seen(tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        h.start()
        await h.until(S.RUNNING)
        assert h.comp.snapshot().confinement is ENFORCED
        await asyncio.wait_for(h.comp.request_stop(ExitReason.SHUTDOWN), 5)
        snap = h.comp.snapshot()
        assert (snap.state, snap.reason) == (S.STOPPED, ExitReason.SHUTDOWN)
        assert snap.last_exit is not None and snap.last_exit.reason is ExitReason.SHUTDOWN
    scenario(test, tmp_path)


def test_a_stop_that_needs_sigkill_says_timeout(tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        h.launcher.ignores_sigterm = True
        h.start()
        await h.until(S.RUNNING)
        await asyncio.wait_for(h.comp.request_stop(), 5)
        assert h.states[-3:] == [S.STOP_SIGTERM, S.STOP_SIGKILL, S.STOPPED]
        assert h.comp.last_exit is not None
        assert h.comp.last_exit.reason is ExitReason.TIMEOUT
        assert h.launcher.children[0].signals == [signal.SIGTERM, signal.SIGKILL]
    scenario(test, tmp_path)


def test_a_start_sent_during_a_stop_is_kept(tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        h.launcher.ignores_sigterm = True  # the stop takes a while: SIGKILL after 50 ms
        h.start()
        await h.until(S.RUNNING)
        stop = asyncio.create_task(h.comp.request_stop())
        await h.until(S.STOP_SIGTERM)
        h.launcher.ignores_sigterm = False
        await asyncio.wait_for(h.comp.request_start(), 5)
        assert stop.done()  # the stop finished first and its caller was answered
        assert h.comp.state is S.RUNNING and len(h.launcher.children) == 2
    scenario(test, tmp_path)


def test_a_stop_before_a_start_begins_wins_and_wakes_the_start(tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        h.start()
        await h.until(S.RUNNING)
        await h.comp.request_stop()
        start = asyncio.create_task(h.comp.request_start())
        stop = asyncio.create_task(h.comp.request_stop())
        await asyncio.wait_for(asyncio.gather(start, stop), 5)
        assert h.comp.state is S.STOPPED and len(h.launcher.children) == 1
    scenario(test, tmp_path)


def test_a_dependency_that_fails_fails_its_dependent(tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        assert h.base is not None
        h.protocol.mode = "hang"  # the base never comes up...
        h.tasks.append(asyncio.create_task(h.base.run()))
        await asyncio.wait_for(h.base.wait_until(lambda c: c.state is S.STARTING), 5)
        h.tasks.append(asyncio.create_task(h.comp.run()))
        await h.base.request_stop()  # ...and is stopped: calc cannot start now
        await h.until(S.FAILED)
        assert h.comp.machine.reason is ExitReason.DEPENDENCY
        assert len(h.launcher.children) == 1  # calc itself was never launched
    scenario(test, tmp_path, dependency=True)


def test_a_crash_during_bootstrap_is_a_failed_start_and_backs_off(tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        h.protocol.mode = "crash"
        h.start()
        await asyncio.wait_for(h.comp.wait_until(lambda c: len(h.clock.slept) >= 3), 5)
        assert h.comp.last_exit is not None
        assert h.comp.last_exit.reason is ExitReason.BOOTSTRAP_FAILED
        assert h.clock.slept[:3] == [1.0, 2.0, 4.0]  # exponential, never reset
        h.protocol.mode = "up"
        await h.until(S.RUNNING)
    scenario(test, tmp_path)


def test_a_bootstrap_timeout_never_counts_as_a_healthy_run(tmp_path: Path) -> None:
    """Before: a component silent for the whole bootstrap timeout "ran" that long, which
    reset the backoff, so it was restarted forever at the same pace."""
    async def test(h: Harness) -> None:
        h.protocol.mode = "hang"
        h.start()
        await asyncio.wait_for(h.comp.wait_until(lambda c: len(h.clock.slept) >= 5), 10)
        assert h.clock.slept[:5] == [1.0, 2.0, 4.0, 8.0, 8.0]
        assert h.comp.last_exit is not None
        assert h.comp.last_exit.reason is ExitReason.BOOTSTRAP_FAILED
        assert "no Init within" in (h.comp.last_exit.detail or "")
        assert all(c.signals == [signal.SIGTERM] for c in h.launcher.children[:-1])
    scenario(test, tmp_path)


def test_a_restart_is_one_job_that_ends_running(tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        h.start()
        await h.until(S.RUNNING)
        first = h.launcher.children[0]
        await asyncio.wait_for(h.comp.request_restart(), 5)
        assert first.returncode == -signal.SIGTERM
        assert h.comp.state is S.RUNNING and len(h.launcher.children) == 2
        assert h.comp.restarts == 0  # a user's restart is not an automatic one
    scenario(test, tmp_path)


# -- warm standby --------------------------------------------------------------------------

def _standby_ready(c: Component) -> bool:
    snap = c.snapshot().standby
    return snap is not None and snap[1]


async def _ready(h: Harness, *, not_pid: int | None = None) -> int:
    await asyncio.wait_for(
        _poll(lambda: _standby_ready(h.comp) and h.comp.standby_pid != not_pid), 5)
    pid = h.comp.standby_pid
    assert pid is not None
    return pid


async def _poll(ok: Callable[[], bool]) -> None:
    # A standby's readiness is not a state change of the component: yield until it holds.
    while not ok():
        await asyncio.sleep(0)


def test_a_crash_promotes_the_ready_standby_as_one_counted_restart(tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        h.start()
        await h.until(S.RUNNING)
        standby = await _ready(h)
        active = h.launcher.children[0]
        assert h.comp.pid == active.pid and standby == h.launcher.standbys[0].pid
        active.exit(-signal.SIGKILL)
        await _poll(lambda: h.comp.pid == standby and h.comp.state is S.RUNNING)
        assert h.comp.restarts == 1 and h.clock.slept == [1.0]  # the backoff, as today
        assert h.states[-3:] == [S.AUTO_RESTART, S.STARTING, S.RUNNING]
        assert h.comp.last_exit is not None and h.comp.last_exit.signal == signal.SIGKILL
        fresh = await _ready(h, not_pid=standby)
        assert fresh == h.launcher.standbys[1].pid
        assert len(h.launcher.children) == 3  # no process launched for the restart itself
        # Its successor's crash promotes the fresh standby: the backoff doubles.
        h.launcher.children[1].exit(1)
        await _poll(lambda: h.comp.pid == fresh and h.comp.state is S.RUNNING)
        assert h.comp.restarts == 2 and h.clock.slept == [1.0, 2.0]
    scenario(test, tmp_path, standby=True)


def test_a_lost_standby_is_replaced_after_a_backoff_and_never_promoted(tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        h.start()
        await h.until(S.RUNNING)
        first = await _ready(h)
        h.launcher.standbys[0].exit(1)
        second = await _ready(h, not_pid=first)
        assert second != first and h.clock.slept == [1.0]
        assert h.comp.pid == h.launcher.children[0].pid and h.comp.restarts == 0
        assert h.launcher.children[0].signals == []
    scenario(test, tmp_path, standby=True)


def test_a_crash_with_no_ready_standby_starts_a_process_as_today(tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        h.launcher.standby_gate = asyncio.Event()  # the standby never gets launched
        h.start()
        await h.until(S.RUNNING)
        h.launcher.children[0].exit(1)
        await _poll(lambda: len(h.launcher.children) == 2 and h.comp.state is S.RUNNING)
        assert h.comp.pid == h.launcher.children[1].pid and h.comp.restarts == 1
        assert h.launcher.standbys == []
    scenario(test, tmp_path, standby=True)


def test_stop_restart_and_a_final_failure_end_the_standby(tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        h.start()
        await h.until(S.RUNNING)
        first = await _ready(h)
        await h.comp.request_restart()  # a restart starts a process: never the standby
        assert h.comp.pid not in (first, h.launcher.children[0].pid)
        await _poll(lambda: h.launcher.standbys[0].returncode is not None)
        await _ready(h, not_pid=first)
        await h.comp.request_stop()
        assert all(c.returncode is not None for c in h.launcher.children)
        assert h.comp.snapshot().standby == (None, False)
    scenario(test, tmp_path, standby=True)


def test_no_restart_policy_fails_and_drops_the_standby_unpromoted(tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        h.start()
        await h.until(S.RUNNING)
        await _ready(h)
        standby = h.launcher.standbys[0]
        h.launcher.children[0].exit(1)
        await h.until(S.FAILED)
        await _poll(lambda: standby.returncode is not None)
        assert h.comp.pid is None and h.comp.restarts == 0
        assert standby.signals == [signal.SIGTERM]
    scenario(test, tmp_path, restart="no", standby=True)


def test_a_standby_failing_verification_is_replaced_and_never_promoted(
        tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        h.launcher.standby_confinement = Confinement("violated", {}, ("seccomp off",))
        h.start()
        await h.until(S.RUNNING)
        # Each unconfined standby is killed at once and another tried after a backoff
        # (1 s, 2 s, ...: the component's own settings, floored at 0.1 s).
        await asyncio.wait_for(_poll(lambda: len(h.launcher.standbys) >= 3), 5)
        assert h.clock.slept[:2] == [1.0, 2.0]
        assert not _standby_ready(h.comp)
        assert all(c.returncode is not None for c in h.launcher.standbys[:2])
        assert h.comp.pid == h.launcher.children[0].pid and h.comp.restarts == 0
        h.launcher.standby_confinement = None
        await _ready(h)  # a good one comes, and is the one promoted at a crash
        standby = h.comp.standby_pid
        h.launcher.children[0].exit(1)
        await _poll(lambda: h.comp.pid == standby and h.comp.state is S.RUNNING)
    scenario(test, tmp_path, standby=True)
