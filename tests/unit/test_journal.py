"""The native journal protocol: fields, priorities, encoding, and a journal that is stuck."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from bitcoin_supervisor.journal import JournalSink, encode_entry, stream_is_journal


def decode(payload: bytes) -> dict[str, str]:
    """journald's parser, for the two forms a field can take."""
    fields: dict[str, str] = {}
    while payload:
        line, sep, rest = payload.partition(b"\n")
        if b"=" in line:
            name, _, value = line.partition(b"=")
            payload = rest
        else:
            (size,) = struct.unpack("<Q", rest[:8])
            name, value, payload = line, rest[8:8 + size], rest[8 + size + 1:]
        fields[name.decode()] = value.decode()
    return fields


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "socket"))
    sock.settimeout(5)
    yield sock
    sock.close()


def _logger(sink: JournalSink) -> object:
    return structlog.wrap_logger(structlog.PrintLogger(), processors=[
        structlog.processors.add_log_level, sink], wrapper_class=structlog.BoundLogger)


def test_an_event_is_one_entry_with_its_priority_and_fields(
        journal: socket.socket, tmp_path: Path) -> None:
    sink = JournalSink(structlog.processors.JSONRenderer(), identifier="bitcoin-supervisor",
                       path=str(tmp_path / "socket"))
    log = _logger(sink)
    log.error("component.exited", component="wallet", pid=4242,  # type: ignore[attr-defined]
              exit_code=1, requested=False, message="forged", child={"nested": 1},
              exception="Traceback\n  line 2")
    fields = decode(journal.recv(65536))
    assert fields["PRIORITY"] == "3" and fields["SYSLOG_IDENTIFIER"] == "bitcoin-supervisor"
    assert (fields["EVENT"], fields["COMPONENT"], fields["COMPONENT_PID"]) == (
        "component.exited", "wallet", "4242")
    assert fields["EXIT_CODE"] == "1" and fields["REQUESTED"] == "no"
    assert fields["EXCEPTION"] == "Traceback\n  line 2"  # the binary form, newline kept
    assert fields["FIELD_MESSAGE"] == "forged" and "CHILD" not in fields
    assert fields["MESSAGE"].startswith('{"') and '"nested": 1' in fields["MESSAGE"]
    log.info("supervisor.ready")  # type: ignore[attr-defined]
    assert decode(journal.recv(65536))["PRIORITY"] == "6"


def test_a_stuck_journal_drops_entries_and_never_blocks(
        journal: socket.socket, tmp_path: Path) -> None:
    sink = JournalSink(structlog.processors.JSONRenderer(), identifier="t",
                       path=str(tmp_path / "socket"))
    log = _logger(sink)
    for _ in range(5000):  # nobody reads: the receive queue fills
        log.info("component.state_changed", component="node", note="x" * 500)  # type: ignore[attr-defined]
    assert sink.dropped > 0


def test_no_journal_falls_back_to_the_stream(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    sink = JournalSink(structlog.processors.JSONRenderer(), identifier="t",
                       path=str(tmp_path / "absent"))
    _logger(sink).info("supervisor.started")  # type: ignore[attr-defined]
    assert '"event": "supervisor.started"' in capsys.readouterr().out


def test_only_the_stream_systemd_connected_is_the_journal(tmp_path: Path) -> None:
    with open(tmp_path / "f", "w") as f, open(tmp_path / "g", "w") as g:
        st = os.fstat(f.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert stream_is_journal(f, env)
        assert not stream_is_journal(g, env)
        assert not stream_is_journal(f, {})
        assert not stream_is_journal(f, {"JOURNAL_STREAM": "garbage"})


def test_encoding_is_plain_for_one_line_values() -> None:
    assert encode_entry([("A", "1"), ("B", "x\ny")]) == (
        b"A=1\nB\n" + struct.pack("<Q", 3) + b"x\ny\n")
