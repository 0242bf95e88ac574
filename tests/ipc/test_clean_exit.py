"""A sandboxed wallet or index exits with its own code on every orderly stop and every
failed bootstrap, never with KJ's "terminate called ... close: Bad file descriptor".

The crash needed the real sequence: schemas loaded, then the sandbox closing every
descriptor but the IPC socket, then the event loop and the link; so these tests run the
real role executables under their real policies, over a socketpair.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _ipc_roles import PROTOCOL, run

from bitcoin_supervisor.interfaces import ComponentSettings

BIN = Path(sys.executable).parent
EXIT_OK = 0  # roles._main: stopped by a signal or by the stop RPC
EXIT_LINK_LOST = 1  # roles._main: the supervisor's end of the link went away

FDS_AFTER_LOAD = textwrap.dedent("""
    import os
    before = set(os.listdir("/proc/self/fd"))
    from bitcoin_supervisor.ipc.capnp import load_schemas
    load_schemas()
    print(sorted(set(os.listdir("/proc/self/fd")) - before))
""")


class Role:
    """One real role process with its end of a socketpair, stderr captured."""

    def __init__(self, role: str, tmp_path: Path) -> None:
        datadirs = {name: str(tmp_path / name) for name in ("node", role)}
        (tmp_path / "node" / "blocks").mkdir(parents=True)
        settings = ComponentSettings(name=role, role=role, datadir=datadirs[role],
                                     sandbox=role, datadirs=datadirs)
        self.sock, child_end = socket.socketpair()
        self.process = subprocess.Popen(
            [str(BIN / f"bitcoin-supervisor-{role}"), "-ipcfd", str(child_end.fileno())],
            pass_fds=(child_end.fileno(),), env={**os.environ, **settings.to_env()},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        child_end.close()  # else we never see EOF when the child dies

    def exit(self) -> tuple[int, str]:
        """Wait for the process; return its returncode (negative: signal) and stderr."""
        _, stderr = self.process.communicate(timeout=60)
        return self.process.returncode, stderr

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def assert_clean(code: int, stderr: str, expected: int) -> None:
    assert "terminate called" not in stderr and "Bad file descriptor" not in stderr, stderr
    assert code == expected, f"exit {code}, expected {expected}; stderr:\n{stderr[-2000:]}"


def test_loading_the_schemas_leaves_no_descriptor_open() -> None:
    # Every descriptor KJ kept was one the sandbox would close behind its back.
    result = subprocess.run([sys.executable, "-c", FDS_AFTER_LOAD], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("role", ["wallet", "index"])
def test_sigterm_after_serving_exits_zero(role: str, tmp_path: Path) -> None:
    proc = Role(role, tmp_path)

    async def main() -> None:
        conn = await PROTOCOL.connect(proc.sock, peer=role)
        echo = await conn.init.make_echo()
        assert await echo.echo("up") == "up"
        proc.process.send_signal(signal.SIGTERM)
        await conn.wait_disconnected()
        conn.close()

    try:
        run(main)
        assert_clean(*proc.exit(), EXIT_OK)
    finally:
        proc.kill()


@pytest.mark.parametrize("role", ["wallet", "index"])
def test_peer_closing_the_link_exits_with_link_lost(role: str, tmp_path: Path) -> None:
    proc = Role(role, tmp_path)

    async def main() -> None:
        conn = await PROTOCOL.connect(proc.sock, peer=role)
        echo = await conn.init.make_echo()
        assert await echo.echo("up") == "up"
        conn.close()
        await conn.wait_disconnected()

    try:
        run(main)
        assert_clean(*proc.exit(), EXIT_LINK_LOST)
    finally:
        proc.kill()


@pytest.mark.parametrize("role", ["wallet", "index"])
def test_peer_closing_before_init_exits_with_link_lost(role: str, tmp_path: Path) -> None:
    # A failed bootstrap: the supervisor gives up before it ever calls Init.
    proc = Role(role, tmp_path)
    proc.sock.close()
    try:
        assert_clean(*proc.exit(), EXIT_LINK_LOST)
    finally:
        proc.kill()
