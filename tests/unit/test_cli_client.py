"""The CLI's client verbs against a stand-in daemon on a real unix socket: what they
import (no daemon code), what they print and how they exit."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from _controlfixture import INDEX, STATUS, WALLET

from bitcoin_supervisor.supervisor._config import load_config
from bitcoin_supervisor.supervisor._locate import socket_path
from bitcoin_supervisor.supervisor.cli import format_status
from bitcoin_supervisor.supervisor.control_protocol import (
    CONTROL_SOCKET,
    Accepted,
    ComponentReply,
    ErrorCode,
    ErrorReply,
    Reply,
    RestartRequest,
    ShutdownRequest,
    StartRequest,
    StatusReply,
    StatusRequest,
    StopRequest,
    parse_request,
)

# Modules the client path must never load: the daemon and everything it stands on.
FORBIDDEN = ("asyncio", "structlog", "capnp", "psutil", "prctl", "pyseccomp",
             "bitcoin_supervisor.log", "bitcoin_supervisor.ipc", "bitcoin_supervisor.sandbox",
             "bitcoin_supervisor.supervisor._daemon", "bitcoin_supervisor.supervisor._component",
             "bitcoin_supervisor.supervisor._broker", "bitcoin_supervisor.supervisor._control",
             "bitcoin_supervisor.supervisor._state", "bitcoin_supervisor.supervisor._policycli")

# Runs the CLI's main() in a fresh interpreter, then reports its exit status and every
# module it loaded (the CLI exits through SystemExit).
RUNNER = """
import json, sys
from bitcoin_supervisor.supervisor.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def answer(request: object) -> Reply:
    match parse_request(request):
        case StatusRequest(name=None):
            return STATUS
        case StatusRequest(name="wallet"):
            return StatusReply(STATUS.supervisor, (WALLET,))
        case StatusRequest(name=name) | RestartRequest(name=name):
            return ErrorReply(ErrorCode.UNKNOWN_COMPONENT, f"unknown component {name!r}")
        case StartRequest(name=name):
            return ErrorReply(ErrorCode.COMPONENT_FAILED,
                              f"{name} is failed (start-limit-hit)", INDEX)
        case StopRequest():
            return ComponentReply(INDEX)
        case ShutdownRequest():
            return Accepted()


@contextmanager
def fake_daemon(datadir: Path) -> Iterator[list[object]]:
    """Answer requests on ``datadir``/supervisor.sock from a thread; yields the requests."""
    seen: list[object] = []
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(datadir / "supervisor.sock"))
    listener.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn, conn.makefile("rwb") as stream:
                request = json.loads(stream.readline())
                seen.append(request)
                stream.write(json.dumps(answer(request).to_json()).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None
            ) -> tuple[int, str, str, list[str]]:
    """(exit status, stdout, stderr without the report, modules loaded) of the CLI;
    ``env`` is added to the environment."""
    proc = subprocess.run([sys.executable, "-c", RUNNER, *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd, env={**os.environ, **(env or {})})
    *err, report = proc.stderr.splitlines()
    result = json.loads(report)
    return result["code"], proc.stdout, "\n".join(err), result["modules"]


def loaded_forbidden(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]


@pytest.mark.parametrize(("args", "code"), [
    (["status", "--json"], 0),
    (["status", "wallet"], 0),
    (["status", "gui"], 2),
    (["start", "index"], 1),
    (["stop", "index", "--json"], 0),
    (["restart", "gui"], 2),
    (["shutdown"], 0),
])
def test_client_verbs_import_no_daemon_code(tmp_path: Path, args: list[str], code: int) -> None:
    with fake_daemon(tmp_path) as seen:
        status, _, _, modules = run_cli(*args, "--datadir", str(tmp_path), cwd=tmp_path)
    assert status == code
    assert len(seen) == 1
    assert loaded_forbidden(modules) == []


def test_status_finds_the_socket_through_the_config(tmp_path: Path) -> None:
    # The datadir comes from the config (relative to the file, like the daemon does it),
    # read without loading the config machinery.
    (tmp_path / "run").mkdir()
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "multiprocess.toml").write_text(
        '[supervisor]\ndatadir = "../run"\n[components.node]\n')
    with fake_daemon(tmp_path / "run") as seen:
        status, out, _, modules = run_cli("status", "--json", cwd=tmp_path / "etc")
    assert (status, seen) == (0, [{"verb": "status", "name": None}])
    assert json.loads(out) == {k: v for k, v in STATUS.to_json().items() if k != "ok"}
    assert "bitcoin_supervisor.supervisor._config" not in modules
    assert loaded_forbidden(modules) == []


def test_rpc_imports_no_daemon_code(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[supervisor]\ndatadir = "{tmp_path}"\n'
                      '[components.node]\nrpcport = 1\n')
    with fake_daemon(tmp_path):
        status, _, err, modules = run_cli("rpc", "--config", str(config), "getblockcount",
                                          cwd=tmp_path)
    assert status == 1 and "cannot read the node's cookie" in err
    assert loaded_forbidden(modules) == []


def test_bad_config_is_reported_by_the_real_loader(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[supervisor]\ndatadir = 3\n')
    status, _, err, _ = run_cli("status", "--config", str(config), cwd=tmp_path)
    assert status == 2
    assert err == (f"bitcoin-supervisor: {config}:2:11: 'datadir' in [supervisor] must be "
                   "a string, not integer")


def test_component_verbs_print_the_component_once(tmp_path: Path) -> None:
    with fake_daemon(tmp_path):
        stopped = run_cli("stop", "index", "--datadir", str(tmp_path), cwd=tmp_path)
        failed = run_cli("start", "index", "--datadir", str(tmp_path), cwd=tmp_path)
    # No "pid None" and no doubled "failed (failed)".
    assert stopped[1] == "index: failed (start-limit-hit)\n"
    assert failed[1] == "index: failed (start-limit-hit)\n"
    assert failed[2] == "bitcoin-supervisor: index is failed (start-limit-hit)"


def test_human_status_has_no_none_and_no_doubled_words() -> None:
    text = format_status(STATUS)
    assert "None" not in text and "(failed)" not in text
    assert re.search(r"● wallet — role wallet\n\s+Active: active \(running\) since ", text)
    assert "Main PID: 4242" in text
    assert "     Active: failed (start-limit-hit)\n" in text
    assert "  Last exit: signal SIGKILL (signal)\n" in text
    assert "  Last exit: code 78 (boot-refused) cannot read policy\n" in text
    assert "cgroup v1 memory 512M pids 128, using 6M" in text
    assert "   Confined: configured (not verified from /proc)\n" in text
    assert "     Policy: none (runs unsandboxed)\n" in text


def test_version() -> None:
    cli = Path(sys.executable).parent / "bitcoin-supervisor"
    proc = subprocess.run([str(cli), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert re.fullmatch(r"bitcoin-supervisor \d+\.\d+\.\d+\S*\n", proc.stdout)


@pytest.mark.parametrize("line", ['datadir = "data"', 'datadir = "../up/d"',
                                  'datadir = "~/bitcoin-supervisor-test"',
                                  'datadir = "{tmp}/abs"', ""])
def test_socket_path_agrees_with_the_config_loader(tmp_path: Path, line: str) -> None:
    config = tmp_path / "etc" / "multiprocess.toml"
    config.parent.mkdir()
    config.write_text(f"[supervisor]\n{line.format(tmp=tmp_path)}\n[components.node]\n")
    assert socket_path(str(config), None) == load_config(config).datadir / CONTROL_SOCKET
    assert socket_path(str(config), "rel") == load_config(
        config, datadir_override="rel").datadir / CONTROL_SOCKET
