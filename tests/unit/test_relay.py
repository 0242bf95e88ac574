"""A child's output is relayed as data: never a supervisor event, escaped, capped, bounded."""

from __future__ import annotations

import json

from structlog.testing import capture_logs

from bitcoin_supervisor.log import get_logger
from bitcoin_supervisor.supervisor._relay import ChildLogRelay


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_forged_supervisor_event_stays_the_childs_words() -> None:
    relay = ChildLogRelay(get_logger(component="wallet"))
    forged = json.dumps({"event": "component.state_changed", "level": "critical",
                         "component": "node", "new": "running", "pid": 1})
    with capture_logs() as logs:
        said = relay.relay(42, "stderr", forged)
    assert said is not None and said.startswith("component.state_changed")
    assert [e["event"] for e in logs] == ["child.log"]
    entry = logs[0]
    assert entry["log_level"] == "warning"  # critical is capped
    assert entry["child_event"] == "component.state_changed"
    assert entry["pid"] == 42 and entry["child"] == {"new": "running"}
    assert "component" not in entry["child"]  # it cannot claim another component's name


def test_control_characters_cannot_forge_lines_on_a_terminal() -> None:
    relay = ChildLogRelay(get_logger())
    with capture_logs() as logs:
        relay.relay(1, "stdout", "\x1b[2J\rsupervisor.stopped\x07")
        relay.relay(1, "stderr", json.dumps({"event": "x\ny", "msg": "\x1b]0;title\x07"}))
    assert logs[0]["line"] == "\\x1b[2J\\x0dsupervisor.stopped\\x07"
    assert logs[1]["child_event"] == "x\\x0ay"
    assert logs[1]["child"]["msg"] == "\\x1b]0;title\\x07"
    for entry in logs:
        assert not any(ch in json.dumps(entry, ensure_ascii=False)
                       for ch in "\x1b\x07\r")


def test_huge_and_deep_values_are_bounded() -> None:
    relay = ChildLogRelay(get_logger())
    deep: object = "end"
    for _ in range(50):
        deep = {"k": deep}
    with capture_logs() as logs:
        relay.relay(1, "stderr", json.dumps({"event": "e", "big": "a" * 100_000,
                                             "deep": deep,
                                             **{f"k{i}": i for i in range(500)}}))
    child = logs[0]["child"]
    assert len(child["big"]) <= 2001
    assert len(child) <= 40
    assert len(json.dumps(logs[0])) < 10_000


def test_a_flood_is_cut_and_counted_and_the_count_reported() -> None:
    clock = Clock()
    relay = ChildLogRelay(get_logger(), rate=100, burst=50, clock=clock)
    with capture_logs() as logs:
        for i in range(300):
            relay.relay(1, "stdout", f"line {i}")
        assert sum(e["event"] == "child.log" for e in logs) == 50
        assert relay.dropped == 250
        clock.now += 1.0  # the bucket refills
        relay.relay(1, "stdout", "after")
    dropped = [e for e in logs if e["event"] == "child.log_dropped"]
    assert len(dropped) == 1 and dropped[0]["lines"] == 250
    assert logs[-1]["line"] == "after"


def test_flush_reports_a_flood_nobody_followed() -> None:
    clock = Clock()
    relay = ChildLogRelay(get_logger(), rate=1, burst=1, clock=clock)
    with capture_logs() as logs:
        for _ in range(5):
            relay.relay(1, "stdout", "x")
        relay.flush()
    assert [e["event"] for e in logs] == ["child.log", "child.log_dropped"]
    assert logs[-1]["lines"] == 4
