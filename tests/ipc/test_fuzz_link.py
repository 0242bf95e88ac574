"""Random bytes on the IPC link, both ways: at the supervisor's end of a socketpair to a
real, sandboxed role process, and from a fake peer to the supervisor's own capnp client.
Neither side may crash (a signal, KJ's "terminate called"), hang once the link is gone,
or let a claimed message size make it allocate without bound. Bounded example counts:
each role example is a process start (~0.2 s)."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from _ipc_roles import PROTOCOL, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitcoin_supervisor.interfaces import ComponentSettings, IpcError

BIN = Path(sys.executable).parent
EXIT_LINK_LOST = 1  # roles._main: the supervisor's end of the link went away
MAX_CHILD_RSS_MIB = 300  # a role idles at ~40 MiB; capnp's own cap is 64 MiB a message
SETTINGS = settings(deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def _frame(words: list[bytes], claimed: int | None = None) -> bytes:
    """One capnp message with a single segment (a claimed size may lie)."""
    body = b"".join(words)
    size = len(body) // 8 if claimed is None else claimed
    return struct.pack("<II", 0, size) + body


_WORD = st.binary(min_size=8, max_size=8)
PAYLOADS = st.one_of(
    st.binary(min_size=1, max_size=4096),
    st.lists(_WORD, min_size=1, max_size=64).map(_frame),  # framed, random content
    st.tuples(st.lists(_WORD, max_size=4), st.sampled_from(
        [2**28, 2**29 - 1, 2**32 - 1, 8 * 2**20 + 1])).map(lambda t: _frame(*t)),  # huge claims
    st.lists(st.lists(_WORD, min_size=1, max_size=8).map(_frame), min_size=2, max_size=8)
    .map(b"".join),  # several messages in a row
    st.tuples(st.integers(min_value=1, max_value=2**32 - 1), st.binary(max_size=64))
    .map(lambda t: struct.pack("<I", t[0]) + t[1]),  # absurd segment counts
)


def _run_role(role: str, root: Path, payload: bytes) -> tuple[int, str, float]:
    """Start ``role`` on a socketpair, write ``payload``, close the link; return its exit
    status (negative: a signal), stderr and peak RSS in MiB."""
    datadirs = {name: str(root / name) for name in ("node", role)}
    (root / "node" / "blocks").mkdir(parents=True, exist_ok=True)
    settings_ = ComponentSettings(name=role, role=role, datadir=datadirs[role],
                                  sandbox=role, datadirs=datadirs)
    ours, theirs = socket.socketpair()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [str(BIN / f"bitcoin-supervisor-{role}"), "-ipcfd", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), env={**os.environ, **settings_.to_env()},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        theirs.close()
        try:
            ours.settimeout(5)
            ours.sendall(payload)
        except OSError:
            pass  # it may refuse the rest once it saw the start: that is the point
        ours.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"{role} still runs 30 s after its link closed") from None
        err.seek(0)
        text = err.read().decode(errors="replace")
    return proc.returncode, text, _peak_rss_children()


def _peak_rss_children() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


@settings(SETTINGS, max_examples=24)
@given(payload=PAYLOADS, role=st.sampled_from(["wallet", "index"]))
def test_random_bytes_to_a_real_role_child(payload: bytes, role: str) -> None:
    with tempfile.TemporaryDirectory(prefix="fuzz-link-") as tmp:
        code, stderr, rss = _run_role(role, Path(tmp), payload)
    assert "terminate called" not in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert code in (0, EXIT_LINK_LOST), f"exit {code}; stderr:\n{stderr[-2000:]}"
    assert rss < MAX_CHILD_RSS_MIB, f"a role child peaked at {rss:.0f} MiB"


@settings(SETTINGS, max_examples=60)
@given(payload=PAYLOADS, keep_open=st.booleans())
def test_random_bytes_to_the_supervisors_client(payload: bytes, keep_open: bool) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    async def main() -> None:
        ours, peer = socket.socketpair()
        peer.sendall(payload)
        if not keep_open:
            peer.close()
        try:
            conn = await asyncio.wait_for(PROTOCOL.connect(ours, peer="fuzz"), 2)
            try:
                await asyncio.wait_for(conn.init.make_echo(), 2)
            finally:
                conn.close()
        except IpcError:
            pass  # the link broke or the "peer" answered nonsense: a clean error
        except TimeoutError:
            # Only a peer that stays silent after an incomplete message may keep us
            # waiting, and then only as long as the caller's deadline.
            assert keep_open, "no answer although the peer had closed the link"
        finally:
            peer.close()

    run(main)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    assert grown < 200, f"the client grew by {grown:.0f} MiB on {len(payload)} bytes"
