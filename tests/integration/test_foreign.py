"""A component that is none of our roles is confined exactly like one: the launcher applies
the policy before the program's first instruction and the supervisor checks /proc."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import psutil

from .conftest import free_port, launch, stop_system

_ZERO_CAPS = "0000000000000000"

# A program of its own (not a role entry point): takes the fd as its only argument, the
# way libmultiprocess's example programs do, serves an Init offering Echo, and answers
# "whoami" with what it sees of itself from inside.
_FOREIGN = f"""#!{sys.executable}
import asyncio, os, signal, socket, sys
from bitcoin_supervisor.interfaces import Echo, Init
from bitcoin_supervisor.ipc import make_protocol

class Whoami(Echo):
    async def echo(self, message):
        with open("/proc/self/status") as fh:
            status = dict(line.rstrip("\\n").split(":\\t", 1) for line in fh if ":\\t" in line)
        return " ".join(f"{{k}}={{status[k].strip()}}" for k in ("Seccomp", "NoNewPrivs",
                                                                 "CapEff", "Uid"))

class ForeignInit(Init):
    async def make_echo(self):
        return Whoami()

protocol = make_protocol()

async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    serve = asyncio.ensure_future(protocol.serve(socket.socket(fileno=int(sys.argv[1])),
                                                 ForeignInit(), name="foreign"))
    await asyncio.wait({{serve, asyncio.ensure_future(stop.wait())}},
                       return_when=asyncio.FIRST_COMPLETED)
    return 0

sys.exit(protocol.run(main))
"""


def _proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        return {k: v.strip() for k, v in (line.split(":", 1) for line in fh)}


def test_a_foreign_program_is_confined_like_a_role(tmp_path: Path) -> None:
    program = tmp_path / "foreign-init"
    program.write_text(_FOREIGN)
    program.chmod(0o755)
    config = tmp_path / "foreign.toml"
    config.write_text(f"""
[supervisor]
datadir = "{tmp_path / 'data'}"
[components.node]
rpcport = {free_port()}
[components.calc]
argv = ["{program}", "{{fd}}"]
sandbox = "wallet"
""")
    system = launch(config)
    try:
        first = system.log.wait_for(
            lambda e: e.get("event") == "supervisor.ready"
            or (e.get("event") == "component.state_changed" and e.get("new") == "failed"))
        assert first["event"] == "supervisor.ready", "".join(system.log.raw)
        verified = system.log.wait_for(lambda e: e.get("event") == "sandbox.verified"
                                       and e.get("component") == "calc")
        assert verified["state"] == "enforced"
        calc = system.component("calc")
        assert calc["role"] is None
        assert calc["confinement"] == "enforced", calc
        # The pid the supervisor started is the waiter; the program is PID 1 inside.
        inner = psutil.Process(calc["pid"]).children()
        assert len(inner) == 1
        assert inner[0].cmdline()[:2] == [sys.executable, str(program)]
        for pid in (calc["pid"], inner[0].pid):
            status = _proc_status(pid)
            assert status["Seccomp"] == "2" and status["NoNewPrivs"] == "1"
            for key in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"):
                assert status[key] == _ZERO_CAPS, key
        assert os.readlink(f"/proc/{inner[0].pid}/ns/net") != os.readlink("/proc/self/ns/net")
        if os.geteuid() == 0:
            # This instance's own outer uid (allocated), not the wallet policy's.
            assert inner[0].uids().real == calc["sandbox"]["uid"] >= 0x7800_0000
        human = system.cli("status", "calc").stdout
        assert "Confined: enforced (verified)" in human
        stop_system(system)
        assert system.process.returncode == 0
        for name in ("calc", "node"):
            exited = system.log.wait_for(lambda e, n=name: e.get("event") == "component.exited"
                                         and e.get("component") == n)
            assert (exited["exit_code"], exited["reason"]) == (0, "shutdown"), exited
    finally:
        stop_system(system)


def test_a_program_that_escapes_its_filter_is_killed_not_run(tmp_path: Path) -> None:
    """A foreign program that tries to open an inet socket under the wallet policy dies by
    SIGSYS on its first attempt: confinement holds from the first instruction on."""
    program = tmp_path / "escaper"
    program.write_text(f"#!{sys.executable}\nimport socket\nsocket.socket(socket.AF_INET)\n")
    program.chmod(0o755)
    config = tmp_path / "escaper.toml"
    config.write_text(f"""
[supervisor]
datadir = "{tmp_path / 'data'}"
[components.escaper]
argv = ["{program}", "{{fd}}"]
sandbox = "wallet"
restart = "no"
""")
    system = launch(config)
    try:
        exited = system.log.wait_for(lambda e: e.get("event") == "component.exited")
        assert exited["signal"] == signal.Signals.SIGSYS.name, exited
        assert system.component("escaper")["state"] == "failed"
    finally:
        stop_system(system)
