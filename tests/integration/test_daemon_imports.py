"""The daemon keeps out of its memory what it never needs at run time (issue 9: its RSS
target): what the roles, the sandbox's child side and the CLI's rare paths import."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from .conftest import REPO, free_port, launch, stop_system, write_config

# Each of these cost the daemon memory for good once imported (measured with the bundled
# config): libcrypto through hashlib/secrets (3.4 MiB RSS), package metadata through
# email/zipfile, psutil, pyseccomp with ctypes.util and tempfile (1.2 MiB), the roles
# (their templates import them, not the supervisor), the confinement steps only a child
# runs, and libraries the daemon never uses. (ssl stays: asyncio imports it. structlog
# imports rich's top module when rich is installed, as here for import-linter; its
# console and tracebacks would be the weight.)
_FORBIDDEN = (
    "hashlib", "_hashlib", "hmac", "secrets",
    "importlib.metadata", "email", "zipfile", "csv", "difflib", "psutil",
    "rich.console", "rich.traceback", "aiohttp", "hypothesis", "prctl", "pyseccomp",
    "ctypes.util", "tempfile",
    "bitcoin_supervisor.roles",
    "bitcoin_supervisor.sandbox._forkserver", "bitcoin_supervisor.sandbox._steps",
    "bitcoin_supervisor.sandbox._trampoline", "bitcoin_supervisor.sandbox._caps",
    "bitcoin_supervisor.sandbox._mounts", "bitcoin_supervisor.sandbox._seccomp",
    "bitcoin_supervisor.sandbox._probes",
)


def _forbidden(modules: list[str]) -> list[str]:
    return sorted(m for m in modules
                  if any(m == f or m.startswith(f + ".") for f in _FORBIDDEN))


def test_daemon_never_imports_what_it_does_not_run(tmp_path: Path) -> None:
    port = free_port()
    listing = tmp_path / "modules.txt"
    env = {**os.environ, "BITCOIN_SUPERVISOR_TEST_MODULES": str(listing)}
    watch = str(REPO / "tests" / "integration" / "_importwatch.py")
    system = launch(write_config(tmp_path, port), env=env, rpcport=port,
                    cli=(sys.executable, watch))
    try:
        system.wait_ready()
        # The paths a running daemon takes besides start-up: status, a crash and its
        # restart from the fork server, a user's restart, a health check.
        assert system.status()["components"]
        old = system.component("wallet")["pid"]
        os.kill(old, signal.SIGKILL)
        system.wait_running("wallet", not_pid=old)
        system.cli("restart", "index")
        assert system.rpc("createwallet", "w").strip()
    finally:
        stop_system(system)
    assert system.process.returncode == 0
    modules = listing.read_text().split()
    assert "bitcoin_supervisor.supervisor._daemon" in modules, "not the daemon's list"
    assert _forbidden(modules) == []
