"""One-input fuzz targets shared by the hypothesis tests (tests/fuzz/test_*.py) and the
coverage-guided runner (``make fuzz``, tests/fuzz/__main__.py).

Each target feeds one input to a parser the way the product does and raises
AssertionError (or lets an unexpected exception through) when the parser misbehaves:
anything but a located error of its own kind, a message that is not one line, or a
result that does not survive a round trip. Hangs and memory are bounded by the callers.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import tempfile
import tomllib
from pathlib import Path

from bitcoin_supervisor.interfaces import ConfigError, Echo, Init, IpcError, PolicyError
from bitcoin_supervisor.ipc import make_protocol
from bitcoin_supervisor.sandbox import POLICY_DIR, load_policy
from bitcoin_supervisor.supervisor._client import decode_reply
from bitcoin_supervisor.supervisor._config import load_config
from bitcoin_supervisor.supervisor._tomlpos import TomlPositions
from bitcoin_supervisor.supervisor.control_protocol import (
    ControlError,
    ProtocolError,
    StatusRequest,
    StopRequest,
    parse_request,
    request_to_json,
)

__all__ = ["Workspace", "config_target", "control_target", "link_target", "parses",
           "policy_target", "toml_document"]

ROLES = ("node", "wallet", "index")


class Workspace:
    """A scratch directory reused across inputs: a config file and a policy directory
    holding the shipped syscalls.toml."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="fuzz-"))
        self.config = self.root / "multiprocess.toml"
        self.policies = self.root / "policies"
        self.policies.mkdir()
        shutil.copy(POLICY_DIR / "syscalls.toml", self.policies / "syscalls.toml")
        self.datadirs = {r: self.root / "data" / r for r in ROLES}

    def close(self) -> None:
        """Remove the scratch directory."""
        shutil.rmtree(self.root, ignore_errors=True)


def _one_line(error: ConfigError) -> None:
    text = str(error)
    assert "\n" not in text and "\r" not in text, repr(text)
    assert error.path is not None, text


def config_target(work: Workspace, data: bytes) -> None:
    """``data`` as a config file: loads, or raises a one-line ConfigError; never creates
    anything (a config is read, not acted on); positions are found for any text."""
    work.config.write_bytes(data)
    try:
        load_config(work.config)
    except ConfigError as exc:
        _one_line(exc)
    assert sorted(p.name for p in work.root.iterdir()) == ["multiprocess.toml", "policies"]
    text = data.decode("utf-8", "replace")
    positions = TomlPositions(text)  # must never raise, whatever the text
    positions.find(("components", "node", "role"), value=True)


def policy_target(work: Workspace, data: bytes, role: str = "wallet") -> None:
    """``data`` as ``policies/<role>.toml``: loads, or raises a one-line PolicyError."""
    (work.policies / f"{role}.toml").write_bytes(data)
    try:
        load_policy(role, datadirs=work.datadirs, policy_dir=work.policies,
                    options={"rpcport": 18443}, providers={"chain": "node"})
    except PolicyError as exc:
        _one_line(exc)


def control_target(data: bytes) -> None:
    """``data`` as a request line (the daemon's decoder) and as a reply line (the CLI's):
    a request or ProtocolError, a reply or ControlError; a decoded request survives a
    round trip."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        value = None  # the daemon answers these itself; the records never see them
    else:
        try:
            request = parse_request(value)
        except ProtocolError as exc:
            assert "\n" not in str(exc)
        except RecursionError:
            pass  # answered "nested too deeply" by the server (_control._respond)
        else:
            assert parse_request(json.loads(json.dumps(request_to_json(request)))) == request
    for request in (StatusRequest(), StopRequest(name="wallet")):
        try:
            decode_reply(Path("/run/fuzz.sock"), request, data + b"\n")
        except ControlError as exc:
            assert "\n" not in str(exc)
        except RecursionError:
            pass  # json.loads of a deeply nested reply: the CLI's own stack, not the daemon's


class _Echo(Echo):
    async def echo(self, message: str) -> str:
        return message


class _EchoInit(Init):
    async def make_echo(self) -> Echo:
        return _Echo()


_PROTOCOL = make_protocol()
# Both ends get the peer's bytes and then its EOF: a side that still waits after this
# long hangs (a link that is gone must end every wait).
_LINK_DEADLINE_S = 10.0


def link_target(data: bytes) -> None:
    """``data`` on the IPC link, then EOF: the first byte's low bit picks the side that
    reads it. Odd: the supervisor's capnp client (connect, bootstrap Init, make_echo)
    must end in IpcError or succeed; even: a serving Init (what a role runs on its
    ``-ipcfd``) must return once the link is gone. Both within a deadline; a C++ abort
    ends the process (libFuzzer keeps the input)."""
    if not data:
        return
    to_client, payload = bool(data[0] & 1), data[1:]

    async def main() -> None:
        ours, peer = socket.socketpair()
        try:
            peer.sendall(payload)
        finally:
            peer.close()
        if to_client:
            try:
                conn = await asyncio.wait_for(_PROTOCOL.connect(ours, peer="fuzz"),
                                              _LINK_DEADLINE_S)
                try:
                    await asyncio.wait_for(conn.init.make_echo(), _LINK_DEADLINE_S)
                finally:
                    conn.close()
            except IpcError:
                pass  # the link broke or the "peer" answered nonsense: a clean error
        else:
            await asyncio.wait_for(_PROTOCOL.serve(ours, _EchoInit(), name="fuzz"),
                                   _LINK_DEADLINE_S)

    _PROTOCOL.run(main)


def toml_document(value: object) -> str:
    """Write a dict of TOML values as a document (inline tables throughout)."""
    assert isinstance(value, dict)
    return "".join(f"{_key(k)} = {_value(v)}\n" for k, v in value.items())


def _key(key: str) -> str:
    return json.dumps(key)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # inf, -inf and nan are spelled the same in TOML
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"


def parses(text: str) -> bool:
    """Whether tomllib accepts ``text`` (the generator's self-check)."""
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True
