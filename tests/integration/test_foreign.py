"""A component that is none of our roles is confined exactly like one: the launcher applies
the policy before the program's first instruction and the supervisor checks /proc."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import psutil

from ._peers import write_program
from .conftest import free_port, launch, own_config, stop_system

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
    program = write_program(tmp_path, "foreign-init", _FOREIGN)
    config = own_config(tmp_path, f"""
[components.node]
rpcport = {free_port()}
[components.calc]
argv = ["{program}", "{{fd}}"]
sandbox = "wallet"
""")
    system = launch(config)
    try:
        system.wait_ready()
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
    program = write_program(tmp_path, "escaper", f"#!{sys.executable}\nimport socket\n"
                            "socket.socket(socket.AF_INET)\n")
    config = own_config(tmp_path, f"""
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


# Serves Init like _FOREIGN, but first leaves a grandchild behind in a session of its own
# (the classic daemonizing double fork) and ignores SIGTERM: only the cgroup can end it.
_STUBBORN = _FOREIGN.replace("protocol = make_protocol()", """
ready_r, ready_w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(os.path.join(os.environ["HOME"], "grandchild.pid"), "w") as fh:
            fh.write(str(os.getpid()))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.write(ready_w, b"!")
        import time
        time.sleep(3600)
    os._exit(0)
os.read(ready_r, 1)  # serve only once the grandchild has written its pid
signal.signal(signal.SIGTERM, signal.SIG_IGN)
protocol = make_protocol()""").replace(
    "asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)", "pass")


def test_a_stop_kills_the_whole_tree_and_says_it_needed_sigkill(tmp_path: Path) -> None:
    program = write_program(tmp_path, "stubborn", _STUBBORN)
    config = own_config(tmp_path, f"""
[components.stubborn]
argv = ["{program}", "{{fd}}"]
sandbox = "none"
stop_timeout_s = 0.5
""")
    system = launch(config)
    try:
        system.wait_running("stubborn")
        pid_file = tmp_path / "data" / "stubborn" / "grandchild.pid"
        grandchild = psutil.Process(int(pid_file.read_text()))
        assert grandchild.ppid() != system.component("stubborn")["pid"]  # it escaped
        system.cli("stop", "stubborn")
        comp = system.component("stubborn")
        assert comp["state"] == "inactive"
        assert comp["last_exit"]["reason"] == "timeout", comp
        assert comp["last_exit"]["signal"] == "SIGKILL"
        _, alive = psutil.wait_procs([grandchild], timeout=5)
        assert not alive, "a descendant outlived its component's stop"
    finally:
        stop_system(system)


def test_sandbox_run_works_as_an_argv_wrapper(tmp_path: Path) -> None:
    """``sandbox run`` in a component's argv (the operator's own launcher, with the
    supervisor's confinement off) keeps the IPC fd and confines the program."""
    program = write_program(tmp_path, "foreign-init", _FOREIGN)
    cli = str(Path(sys.executable).parent / "bitcoin-supervisor")
    config = own_config(tmp_path, f"""
[components.calc]
argv = ["{cli}", "sandbox", "run", "--role", "wallet", "--datadir", ".",
        "--keep-fd", "{{fd}}", "--", "{program}", "{{fd}}"]
sandbox = "none"
""")
    system = launch(config)
    try:
        system.wait_running("calc")
        calc = system.component("calc")
        assert calc["confinement"] == "none"  # nothing the supervisor itself applied
        tree = psutil.Process(calc["pid"]).children(recursive=True)
        served = [p for p in tree if str(program) in " ".join(p.cmdline())]
        assert served, [p.cmdline() for p in tree]
        status = _proc_status(served[0].pid)
        assert (status["Seccomp"], status["NoNewPrivs"]) == ("2", "1")
    finally:
        stop_system(system)


# Floods its stderr with forged supervisor events, then serves like _FOREIGN.
_FORGER = _FOREIGN.replace("protocol = make_protocol()", """
import json
forged = json.dumps({"event": "component.state_changed", "level": "critical",
                     "component": "node", "old": "running", "new": "hijacked"})
for _ in range(20000):
    print(forged, file=sys.stderr)
print("\\x1b[2J\\rsupervisor.stopped", file=sys.stderr, flush=True)
protocol = make_protocol()""")


def test_a_components_output_is_relayed_as_data_and_rate_limited(tmp_path: Path) -> None:
    program = write_program(tmp_path, "forger", _FORGER)
    config = own_config(tmp_path, f"""
[components.forger]
argv = ["{program}", "{{fd}}"]
sandbox = "wallet"
""")
    system = launch(config)
    try:
        system.wait_running("forger")
        system.log.wait_for(lambda e: e.get("event") == "child.log_dropped")
        stop_system(system)
        system.log.wait_for(lambda e: e.get("event") == "supervisor.stopped")
        system.log.wait_drain()
        events = system.log.events
        assert not any(e.get("new") == "hijacked" for e in events)
        relayed = [e for e in events if e.get("event") == "child.log"]
        assert relayed and all(e["component"] == "forger" for e in relayed)
        assert all(e["level"] in ("info", "warning") for e in relayed)
        assert len(relayed) < 5000, "the flood reached the log unthrottled"
        assert not any("\x1b" in line for line in system.log.raw)
    finally:
        stop_system(system)
