"""Bind-mode components: the program listens on a socket in its own datadir and the
supervisor dials it; late, never, dying and dropped links through the real daemon."""

from __future__ import annotations

import signal
from pathlib import Path

import psutil

from ._peers import BIND_PEER, write_program
from .conftest import launch, stop_system


def _config(tmp_path: Path, mode: str, *, extra: str = "", start_timeout_s: float = 60) -> Path:
    """A bind-mode peer. The socket deadline is generous unless the test is about it: with
    2 s, the late-socket test failed in a fresh Debian 12 on this 2-core machine at load
    ~30, where a sandboxed Python peer can take longer than that to bind."""
    program = write_program(tmp_path, "bind-peer", BIND_PEER)
    config = tmp_path / "bind.toml"
    config.write_text(f"""
[supervisor]
datadir = "{tmp_path / 'data'}"
[components.peer]
argv = ["{program}", "{{datadir}}/regtest/node.sock", "{mode}"]
ipc = "bind"
socket = "{{datadir}}/regtest/node.sock"
sandbox = "node"
start_timeout_s = {start_timeout_s}
{extra}
[components.peer.restart]
policy = "on-failure"
backoff_initial_s = 0.05
backoff_max_s = 0.1
start_limit_burst = 2
start_limit_interval_s = 60
""")
    return config




def test_a_socket_that_appears_late_is_a_running_confined_component(tmp_path: Path) -> None:
    # Late by 0.5 s after its imports; the deadline is generous because on a loaded
    # machine the imports alone took more than the 2 s the other cases use.
    system = launch(_config(tmp_path, "late:0.5", start_timeout_s=30))
    try:
        system.wait_running("peer")
        peer = system.component("peer")
        assert peer["confinement"] == "enforced", peer
        sock = tmp_path / "data" / "peer" / "regtest" / "node.sock"
        assert sock.is_socket()
        # kill -9 of the program itself: the link goes, and it is started again.
        inner = psutil.Process(peer["pid"]).children()[0]
        inner.send_signal(signal.SIGKILL)
        system.wait_running("peer", not_pid=peer["pid"])
        assert system.component("peer")["restarts"] == 1
    finally:
        stop_system(system)


def test_a_socket_that_never_appears_is_a_failed_start_up_to_the_limit(tmp_path: Path) -> None:
    system = launch(_config(tmp_path, "never", start_timeout_s=2))
    try:
        failed = system.log.wait_for(lambda e: e.get("event") == "component.state_changed"
                                     and e.get("new") == "failed")
        assert failed["reason"] == "start-limit-hit", failed
        peer = system.component("peer")
        assert peer["restarts"] == 1  # two starts (the limit), one restart between them
        last = peer["last_exit"]
        assert last["reason"] == "bootstrap-failed", last
        sock = tmp_path / "data" / "peer" / "regtest" / "node.sock"
        assert last["detail"] == f"no socket at {sock} within 2 s", last
    finally:
        stop_system(system)


def test_a_program_that_dies_once_connected_is_a_failed_start(tmp_path: Path) -> None:
    system = launch(_config(tmp_path, "dying"))
    try:
        failed = system.log.wait_for(lambda e: e.get("event") == "component.state_changed"
                                     and e.get("new") == "failed")
        assert failed["reason"] == "start-limit-hit", failed
        last = system.component("peer")["last_exit"]
        assert (last["reason"], last["exit_code"]) == ("bootstrap-failed", 3), last
        assert last["detail"].endswith("; last output: accepted"), last  # its last words
    finally:
        stop_system(system)


def test_a_lost_link_is_a_component_down_and_restarted(tmp_path: Path) -> None:
    system = launch(_config(tmp_path, "drop:0.3"))
    try:
        system.wait_running("peer")
        first = system.component("peer")["pid"]
        exited = system.log.wait_for(lambda e: e.get("event") == "component.exited")
        assert exited["reason"] == "link-lost", exited
        system.wait_running("peer", not_pid=first)
    finally:
        stop_system(system)
