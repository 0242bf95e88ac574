"""The control protocol's records: JSON round trips, today's status keys, and one precise
ProtocolError for every kind of malformed input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _controlfixture import INDEX, STATUS, WALLET

from bitcoin_supervisor.supervisor.control_protocol import (
    Accepted,
    CgroupSummary,
    CgroupUsage,
    ComponentReply,
    ErrorCode,
    ErrorReply,
    ProtocolError,
    ReloadReply,
    ReloadRequest,
    Request,
    RestartRequest,
    ShutdownRequest,
    StartRequest,
    StatusRequest,
    StopRequest,
    SupervisorInfo,
    parse_reply,
    parse_request,
    request_to_json,
)

# The keys `status --json` printed before this module existed; scripts and the
# integration tests read them, so they stay (keys may be added, never removed).
STATUS_KEYS = {"supervisor", "components"}
SUPERVISOR_KEYS = {"pid", "uptime_s", "config", "datadir"}
COMPONENT_KEYS = {"name", "role", "state", "substate", "reason", "pid", "restarts",
                  "uptime_s", "since", "last_exit", "datadir", "sandbox"}
LAST_EXIT_KEYS = {"exit_code", "signal", "reason", "detail", "at"}
SANDBOX_KEYS = {"policy", "namespaces", "network", "seccomp_default", "seccomp_allowed",
                "landlock", "capabilities", "uid", "landlock_abi", "cgroup"}
CGROUP_KEYS = {"memory_max", "pids_max", "optional", "version", "unavailable"}


def wire(value: dict[str, Any]) -> Any:
    """What the other end sees: the object through real JSON text."""
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("request_", [
    StatusRequest(), StatusRequest("wallet"), StartRequest("index"), StopRequest("node"),
    RestartRequest("wallet"), ShutdownRequest(), ReloadRequest()])
def test_requests_round_trip(request_: Request) -> None:
    assert parse_request(wire(request_to_json(request_))) == request_


def test_request_wire_format() -> None:
    assert request_to_json(StopRequest("wallet")) == {"verb": "stop", "name": "wallet"}
    assert request_to_json(ShutdownRequest()) == {"verb": "shutdown"}
    assert parse_request({"verb": "status"}) == StatusRequest()


@pytest.mark.parametrize(("request_", "reply"), [
    (StatusRequest(), STATUS),
    (StartRequest("wallet"), ComponentReply(WALLET)),
    (ShutdownRequest(), Accepted()),
    (ReloadRequest(), ReloadReply(added=("index2",), removed=(), changed=("wallet",),
                                  unchanged=("node", "index"))),
    (ReloadRequest(), ErrorReply(ErrorCode.BAD_CONFIG, "c.toml:3:8: unknown role 'indx'")),
    (StatusRequest("gui"), ErrorReply(ErrorCode.UNKNOWN_COMPONENT, "unknown component 'gui'")),
    (StartRequest("index"), ErrorReply(ErrorCode.COMPONENT_FAILED,
                                       "index is failed (start-limit-hit)", INDEX)),
])
def test_replies_round_trip(request_: Request, reply: Any) -> None:
    assert parse_reply(request_, wire(reply.to_json())) == reply


def test_status_json_keeps_todays_keys() -> None:
    shown = STATUS.to_json()
    assert shown.pop("ok") is True
    assert STATUS_KEYS <= set(shown)
    assert SUPERVISOR_KEYS <= set(shown["supervisor"])
    wallet, index = shown["components"]
    assert COMPONENT_KEYS <= set(wallet) and COMPONENT_KEYS <= set(index)
    assert LAST_EXIT_KEYS <= set(wallet["last_exit"])
    assert SANDBOX_KEYS <= set(wallet["sandbox"])
    assert CGROUP_KEYS <= set(wallet["sandbox"]["cgroup"])
    # Values are plain JSON: enums by value, tuples as arrays.
    assert wallet["confinement"] == "configured" and index["confinement"] == "none"
    assert wallet["sandbox"]["namespaces"] == ["ipc", "net", "user"]
    assert wallet["last_exit"]["signal"] == "SIGKILL" and index["pid"] is None
    assert wallet["sandbox"]["cgroup"]["usage"]["memory_peak_bytes"] is None


def test_error_reply_wire_format() -> None:
    reply = ErrorReply(ErrorCode.UNKNOWN_COMPONENT, "unknown component 'gui'")
    assert reply.to_json() == {"ok": False, "error": "unknown component 'gui'", "code": 404}
    with_component = ErrorReply(ErrorCode.COMPONENT_FAILED, "x", INDEX).to_json()
    assert with_component["code"] == 409 and with_component["component"]["name"] == "index"


def test_cgroup_usage_keys_may_be_absent() -> None:
    # The sandbox reports only the counters the host has (a missing file: no key).
    assert CgroupUsage.from_json({"pids": 2}) == CgroupUsage(pids=2)
    cgroup = CgroupSummary.from_json({"memory_max": None, "pids_max": None, "optional": "no",
                                      "version": None, "unavailable": "no controller"})
    assert cgroup.usage is None


def test_integers_are_numbers_but_booleans_are_not_integers() -> None:
    info = SupervisorInfo.from_json({"pid": 1, "uptime_s": 3, "config": "c", "datadir": "d"})
    assert info.uptime_s == 3.0 and isinstance(info.uptime_s, float)
    with pytest.raises(ProtocolError, match=r"^supervisor\.pid: expected an integer, "
                                            r"got boolean$"):
        SupervisorInfo.from_json({"pid": True, "uptime_s": 3, "config": "c", "datadir": "d"})


@pytest.mark.parametrize(("value", "message"), [
    ("status", "expected an object, got string"),
    ({}, "verb: missing"),
    ({"verb": "reolad"}, "verb: expected one of 'status', 'start', 'stop', 'restart', "
                         "'shutdown', 'reload', got 'reolad'"),
    ({"verb": "reload", "name": "x"}, "name: unknown key; expected one of verb"),
    ({"verb": "restart"}, "name: missing"),
    ({"verb": "restart", "name": None}, "name: expected a string, got null"),
    ({"verb": "status", "name": ["wallet"]}, "name: expected a string or null, got array"),
    ({"verb": "shutdown", "now": True}, "now: unknown key; expected one of verb"),
    ({"verb": "stop", "name": "x", "nmae": "y"}, "nmae: unknown key; expected one of verb, name"),
])
def test_malformed_requests_raise_one_precise_error(value: object, message: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        parse_request(value)
    assert str(raised.value) == message


def _status_with(path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    """STATUS on the wire with the field at ``path`` set to ``value`` (or removed)."""
    obj = wire(STATUS.to_json())
    target = obj
    for key in path[:-1]:
        target = target[key]
    if value is _REMOVE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


_REMOVE = object()


@pytest.mark.parametrize(("path", "value", "message"), [
    (("components", 1, "pid"), "4242", "components[1].pid: expected an integer or null, "
                                         "got string"),
    (("components", 0, "sandbox", "cgroup", "usage", "pids"), 2.5,
     "components[0].sandbox.cgroup.usage.pids: expected an integer or null, got number"),
    (("components", 0, "sandbox", "namespaces", 1), 3,
     "components[0].sandbox.namespaces[1]: expected a string, got integer"),
    (("components", 0, "sandbox", "cgroup"), None,
     "components[0].sandbox.cgroup: expected an object, got null"),
    (("components", 1, "last_exit"), [], "components[1].last_exit: expected an object, "
                                         "got array"),
    (("components", 0, "confinement"), "maybe",
     "components[0].confinement: expected one of 'none', 'configured', 'enforced', "
     "'violated', "
     "got 'maybe'"),
    (("components", 0, "restarts"), _REMOVE, "components[0].restarts: missing"),
    (("components",), {}, "components: expected an array, got object"),
    (("supervisor", "uptime_s"), "3s", "supervisor.uptime_s: expected a number, got string"),
])
def test_malformed_status_replies_name_the_field(
        path: tuple[str | int, ...], value: object, message: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        parse_reply(StatusRequest(), _status_with(path, value))
    assert str(raised.value) == message


def test_replies_ignore_keys_a_newer_daemon_adds() -> None:
    obj = _status_with(("components", 0, "future_field"), {"x": 1})
    obj["also_new"] = True
    assert parse_reply(StatusRequest(), obj) == STATUS


def test_error_codes_are_one_closed_set() -> None:
    assert parse_reply(StatusRequest(), {"ok": False, "code": 500, "error": "bug"}) == \
        ErrorReply(ErrorCode.INTERNAL, "bug")
    with pytest.raises(ProtocolError, match=r"^code: expected one of 400, 403, 404, 408, "
                                            r"409, 413, 422, 500, 503, got 2$"):
        parse_reply(StatusRequest(), {"ok": False, "code": 2, "error": "old daemon"})
