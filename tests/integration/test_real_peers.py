"""Real foreign programs under the supervisor, confined by their shipped policies:
libmultiprocess's mpcalculator (spawn mode, fd as its only argument, policies/mp-example.toml)
and Bitcoin Core v30's bitcoin-node (bind mode, Core's wire ids, policies/bitcoin-node.toml,
mining regtest blocks over its JSON-RPC). They run when MPCALCULATOR / BITCOIN_NODE name a
binary built by hand (never shipped); otherwise the summary says plainly that they did not."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from tests.conftest import NOT_RUN

from .conftest import System, free_port, launch, stop_system

_ZERO_CAPS = "0000000000000000"


def _binary(variable: str, what: str) -> Path | None:
    value = os.environ.get(variable)
    if not value:
        NOT_RUN.append(f"{what}: set {variable} to a built binary to run it")
        return None
    path = Path(value)
    assert path.is_file() and os.access(path, os.X_OK), f"{variable}={value} is not executable"
    return path


def _our_node() -> str:
    """Our own node beside the foreign program: it must keep its pid through the kill."""
    return f"[components.node]\nrpcport = {free_port()}\n"


def _wait_healthy(system: System, name: str, pid: int) -> None:
    system.log.wait_for(lambda e: e.get("event") == "component.health_passed"
                        and e.get("component") == name and e.get("pid") == pid, timeout=120)


def _assert_confined_and_healthy(system: System, name: str, policy: str, check: str,
                                 program: Path) -> dict[str, Any]:
    """The component runs under ``policy``, verified from /proc by the supervisor and
    by this test on the program itself (PID 1 of its namespace, child of the waiter)."""
    comp = system.component(name)
    _wait_healthy(system, name, comp["pid"])
    comp = system.component(name)
    assert comp["state"] == "active" and comp["confinement"] == "enforced", comp
    assert Path(comp["sandbox"]["policy"]).name == f"{policy}.toml", comp["sandbox"]
    assert comp["sandbox"]["seccomp_default"] == "kill_process"
    assert comp["health"]["check"] == check and comp["health"]["passed"] >= 1, comp
    inner = psutil.Process(comp["pid"]).children()
    assert [p.exe() for p in inner] == [str(program)], inner
    with open(f"/proc/{inner[0].pid}/status", encoding="ascii") as fh:
        status = {k: v.strip() for k, v in (line.split(":", 1) for line in fh)}
    assert status["Seccomp"] == "2" and status["NoNewPrivs"] == "1", status
    assert all(status[k] == _ZERO_CAPS for k in ("CapEff", "CapPrm", "CapBnd")), status
    human = system.cli("status", name).stdout
    assert "Confined: enforced (verified)" in human, human
    assert f"Health: {check} ok" in human, human
    return comp


def _kill9_program(system: System, name: str) -> int:
    """kill -9 the program itself (not the waiter the supervisor started); return the
    waiter's pid, which the restart replaces."""
    first = system.component(name)
    (program,) = psutil.Process(first["pid"]).children()
    system.log.mark()
    os.kill(program.pid, signal.SIGKILL)
    system.wait_running(name, not_pid=first["pid"], timeout=120)
    after = system.component(name)
    assert after["restarts"] == 1 and after["last_exit"]["signal"] == "SIGKILL", after
    return int(first["pid"])


def test_mpcalculator_runs_confined_health_checked_and_restarts_after_kill9(
        tmp_path: Path) -> None:
    binary = _binary("MPCALCULATOR", "libmultiprocess mpcalculator (spawn mode)")
    if binary is None:
        return
    config = tmp_path / "real.toml"
    config.write_text(f"""
[supervisor]
datadir = "{tmp_path / 'data'}"
{_our_node()}
[components.calc]
argv = ["{binary}", "{{fd}}"]
schema = "mp-example"
sandbox = "mp-example"
health = {{ check = "construct", interval_s = 0.2, timeout_s = 5 }}
restart = {{ policy = "on-failure", backoff_initial_s = 0.05 }}
""")
    system = launch(config)
    try:
        system.wait_ready(timeout=120)
        _assert_confined_and_healthy(system, "calc", "mp-example", "construct", binary)
        node_pid = system.component("node")["pid"]
        _kill9_program(system, "calc")
        _assert_confined_and_healthy(system, "calc", "mp-example", "construct", binary)
        assert system.component("node")["pid"] == node_pid  # restarted alone
        assert not any(e.get("event") in ("component.health_failed", "sandbox.violation")
                       for e in system.log.events)
    finally:
        stop_system(system)


class CoreRpc:
    """Bitcoin Core's JSON-RPC on 127.0.0.1, authenticated by the cookie it writes."""

    def __init__(self, datadir: Path, port: int) -> None:
        self._cookie = datadir / "regtest" / ".cookie"
        self._url = f"http://127.0.0.1:{port}/"

    def __call__(self, method: str, *params: object) -> Any:
        """The call's result; AssertionError with Core's error otherwise."""
        error, result = self.try_call(method, *params)
        assert error is None, f"{method}: {error}"
        return result

    def try_call(self, method: str, *params: object) -> tuple[Any, Any]:
        token = base64.b64encode(self._cookie.read_bytes().strip()).decode()
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                           "params": list(params)}).encode()
        request = urllib.request.Request(self._url, data=body, headers={
            "Authorization": f"Basic {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                answer = json.load(reply)
        except urllib.error.HTTPError as exc:  # JSON-RPC 1.x errors come as HTTP 500
            answer = json.load(exc)
        return answer.get("error"), answer.get("result")

    def wait_warm(self, deadline_s: float = 120) -> None:
        """Until the node answers (the cookie exists and RPC warm-up is over). Core offers
        no notification of that to a client, so this asks, with a deadline."""
        end = time.monotonic() + deadline_s
        while True:
            try:
                error, _ = self.try_call("getblockcount")
                if error is None:
                    return
                assert error["code"] == -28, error  # RPC_IN_WARMUP, anything else is wrong
            except (FileNotFoundError, ConnectionError, urllib.error.URLError):
                pass
            assert time.monotonic() < end, f"bitcoin-node's RPC not up in {deadline_s} s"
            time.sleep(0.1)


def test_bitcoin_node_confined_mines_blocks_and_restarts_after_kill9(tmp_path: Path) -> None:
    binary = _binary("BITCOIN_NODE", "Bitcoin Core v30 bitcoin-node (bind mode)")
    if binary is None:
        return
    rpcport, p2pport = free_port(), free_port()
    config = tmp_path / "real.toml"
    config.write_text(f"""
[supervisor]
datadir = "{tmp_path / 'data'}"
{_our_node()}
[components.core]
argv = ["{binary}", "-regtest", "-datadir={{datadir}}", "-ipcbind=unix",
        "-server=1", "-rpcbind=127.0.0.1", "-rpcallowip=127.0.0.1", "-rpcport={rpcport}",
        "-listen=1", "-bind=127.0.0.1:{p2pport}", "-printtoconsole=0"]
ipc = "bind"
socket = "{{datadir}}/regtest/node.sock"
schema = "bitcoin-core"
sandbox = "bitcoin-node"
rpcport = {rpcport}
port = {p2pport}
start_timeout_s = 120
health = {{ check = "echo", interval_s = 0.5, timeout_s = 10 }}
restart = {{ policy = "on-failure", backoff_initial_s = 0.05 }}
""")
    system = launch(config)
    try:
        system.wait_ready(timeout=180)
        _assert_confined_and_healthy(system, "core", "bitcoin-node", "echo", binary)
        rpc = CoreRpc(tmp_path / "data" / "core", rpcport)
        rpc.wait_warm()
        # No wallet: mine to a raw anyone-can-spend script (OP_TRUE).
        descriptor = rpc("getdescriptorinfo", "raw(51)")["descriptor"]
        assert len(rpc("generatetodescriptor", 5, descriptor)) == 5
        assert rpc("getblockcount") == 5
        # The P2P listener its policy allows (a Landlock bind port) accepts on loopback.
        socket.create_connection(("127.0.0.1", p2pport), timeout=30).close()
        # Core writes its chainstate lazily; a kill -9 loses what was not flushed.
        # gettxoutsetinfo flushes it first, so the chain must survive the kill.
        assert rpc("gettxoutsetinfo")["height"] == 5
        node_pid = system.component("node")["pid"]
        _kill9_program(system, "core")
        _assert_confined_and_healthy(system, "core", "bitcoin-node", "echo", binary)
        rpc.wait_warm()
        assert rpc("getblockcount") == 5  # its datadir (chainstate, blocks) survived
        assert len(rpc("generatetodescriptor", 2, descriptor)) == 2
        assert rpc("getblockcount") == 7
        assert system.component("node")["pid"] == node_pid  # restarted alone
        assert not any(e.get("event") in ("component.health_failed", "sandbox.violation")
                       for e in system.log.events)
    finally:
        stop_system(system)
