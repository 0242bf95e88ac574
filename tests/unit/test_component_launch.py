"""Component against a fake launcher: what the verified confinement decides.

The launcher seam (``ComponentLauncher``) lets these run without processes: a fake child
that exits when signalled, a fake protocol whose link stays up until closed.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TypeVar

import pytest

from bitcoin_supervisor.interfaces import Init
from bitcoin_supervisor.ipc import ChildHandle, Connection, Endpoint, Protocol
from bitcoin_supervisor.sandbox import Confinement
from bitcoin_supervisor.supervisor import Broker, Component, load_config
from bitcoin_supervisor.supervisor._launcher import ComponentLauncher, LaunchSpec
from bitcoin_supervisor.supervisor._state import ComponentState, ExitReason

T = TypeVar("T")


class FakeChild(ChildHandle):
    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._code: int | None = None
        self._exited = asyncio.Event()
        self.signals: list[int] = []

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

    async def wait(self) -> int:
        await self._exited.wait()
        assert self._code is not None
        return self._code

    def send_signal(self, sig: int) -> bool:
        if self._code is not None:
            return False
        self.signals.append(sig)
        self._code = -sig
        self._exited.set()
        return True

    def close(self) -> None:
        pass


class FakeLauncher(ComponentLauncher):
    def __init__(self, confinement: Confinement) -> None:
        self.confinement = confinement
        self.children: list[FakeChild] = []

    async def launch(self, spec: LaunchSpec) -> Endpoint:
        child = FakeChild(1000 + len(self.children))
        self.children.append(child)
        ours, _theirs = socket.socketpair()
        return Endpoint(sock=ours, child=child)

    async def verify(self, spec: LaunchSpec, endpoint: Endpoint) -> Confinement:
        return self.confinement

    async def kill(self, spec: LaunchSpec, endpoint: Endpoint) -> None:
        endpoint.child.send_signal(signal.SIGKILL)

    async def release(self, spec: LaunchSpec, endpoint: Endpoint) -> None:
        endpoint.sock.close()


class FakeConnection(Connection):
    def __init__(self) -> None:
        self._gone = asyncio.Event()

    @property
    def init(self) -> Init:
        return Init()

    async def wait_disconnected(self) -> None:
        await self._gone.wait()

    def close(self) -> None:
        self._gone.set()


class FakeProtocol(Protocol):
    def run(self, main: Callable[[], Awaitable[T]]) -> T:
        return asyncio.run(main())  # type: ignore[arg-type]

    async def connect(self, sock: socket.socket, *, peer: str, debug: bool = False
                      ) -> Connection:
        return FakeConnection()

    async def serve(self, sock: socket.socket, init: Init, *, name: str,
                    debug: bool = False) -> None:
        raise NotImplementedError


def _component(tmp_path: Path, launcher: ComponentLauncher) -> Component:
    path = tmp_path / "c.toml"
    path.write_text(f"""
[supervisor]
datadir = "{tmp_path / 'data'}"
[components.calc]
argv = ["/bin/true", "{{fd}}"]
sandbox = "wallet"
restart = "always"
""")
    config = load_config(path)
    return Component(config.components[0], launcher=launcher, protocol=FakeProtocol(),
                     broker=Broker(config.graph), dependencies=[], debug=(),
                     datadirs={"calc": str(tmp_path / "data" / "calc")},
                     on_change=lambda: None)


def test_a_component_not_confined_as_planned_is_killed_and_stays_down(
        tmp_path: Path) -> None:
    violated = Confinement("violated", {"pid": 7}, ("pid 7: Seccomp 0 (want 2: filter)",))
    launcher = FakeLauncher(violated)

    async def scenario() -> None:
        comp = _component(tmp_path, launcher)
        states: list[ComponentState] = []
        comp._on_change = lambda: states.append(comp.state)
        task = asyncio.create_task(comp.run())
        await asyncio.wait_for(comp.wait_until(
            lambda c: c.state is ComponentState.FAILED), timeout=5)
        task.cancel()
        assert ComponentState.RUNNING not in states  # never claimed to run
        assert comp.machine.reason is ExitReason.UNCONFINED
        assert comp.last_exit is not None and "Seccomp 0" in (comp.last_exit.detail or "")
        assert not comp.wanted  # "always" does not restart an unconfined program
        assert len(launcher.children) == 1
        assert launcher.children[0].signals[:1] == [signal.SIGTERM]

    asyncio.run(scenario())


@pytest.mark.parametrize("state", ["enforced", "none"])
def test_a_verified_component_runs_and_status_keeps_what_was_seen(
        tmp_path: Path, state: str) -> None:
    launcher = FakeLauncher(Confinement(state, {"pid": 7, "uid": 64102}))

    async def scenario() -> None:
        comp = _component(tmp_path, launcher)
        task = asyncio.create_task(comp.run())
        await asyncio.wait_for(comp.wait_until(
            lambda c: c.state is ComponentState.RUNNING), timeout=5)
        assert comp.confinement is launcher.confinement
        await asyncio.wait_for(comp.request_stop(ExitReason.SHUTDOWN), timeout=5)
        assert comp.machine.reason is ExitReason.SHUTDOWN
        assert comp.last_exit is not None and comp.last_exit.reason is ExitReason.SHUTDOWN
        task.cancel()

    asyncio.run(scenario())
