"""The link keys of a component: bind mode and its socket, {datadir} in argv, foreign
schemas, health checks, start timeout."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from bitcoin_supervisor import ipc
from bitcoin_supervisor.interfaces import ConfigError
from bitcoin_supervisor.supervisor import _configipc
from bitcoin_supervisor.supervisor._config import HealthConfig, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "multiprocess.toml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value).removeprefix(f"{path}:")

_BIND = """
[supervisor]
datadir = "{data}"
[components.core]
argv = ["/bin/sleep", "-datadir={{datadir}}", "-ipcbind=unix"]
ipc = "bind"
socket = "{{datadir}}/regtest/node.sock"
schema = "bitcoin-core"
sandbox = "none"
start_timeout_s = 5
health = {{ check = "echo", interval_s = 2, timeout_s = 1 }}
"""


def test_a_bind_mode_component_expands_its_datadir(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, _BIND.format(data=tmp_path / "d")))
    core = config.component("core")
    datadir = tmp_path / "d" / "core"
    assert core.ipc == "bind" and core.schema == "bitcoin-core"
    assert core.argv == ("/bin/sleep", f"-datadir={datadir}", "-ipcbind=unix")
    assert core.socket == datadir / "regtest" / "node.sock"
    assert core.health == HealthConfig("echo", 2.0, 1.0)
    assert core.start_timeout_s == 5.0


def test_defaults_spawn_our_schema_no_health_check(tmp_path: Path) -> None:
    node = load_config(write(tmp_path, "[components.node]\n")).component("node")
    assert (node.ipc, node.socket, node.schema) == ("spawn", None, "bitcoin-supervisor")
    assert node.health.check == "none" and node.start_timeout_s == 30.0


def test_bind_mode_needs_a_socket(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.core]
        argv = ["/bin/sleep"]
        ipc = "bind"
        sandbox = "none"
        """) == ('1:1: [components.core] has ipc = "bind" but no \'socket\' (hint: e.g. '
                 'socket = "{datadir}/regtest/node.sock")')


def test_bind_mode_has_no_fd(tmp_path: Path) -> None:
    assert "a bind-mode program inherits no socket" in error_of(tmp_path, """
        [components.core]
        argv = ["/bin/sleep", "{fd}"]
        ipc = "bind"
        socket = "node.sock"
        sandbox = "none"
        """)


def test_the_socket_stays_inside_the_datadir(tmp_path: Path) -> None:
    message = error_of(tmp_path, """
        [components.core]
        argv = ["/bin/sleep"]
        ipc = "bind"
        socket = "../node/node.sock"
        sandbox = "none"
        """)
    assert message.startswith("4:10: socket ") and "is not inside its datadir" in message


def test_an_unknown_placeholder_is_named(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.calc]
        argv = ["/bin/sleep", "{exe}", "{fd}"]
        sandbox = "none"
        """).startswith("2:23: unknown placeholder {exe} in 'argv' of [components.calc]")


def test_our_roles_speak_our_schema_only(tmp_path: Path) -> None:
    assert "serves our own Init" in error_of(tmp_path, """
        [components.node]
        schema = "bitcoin-core"
        """)


def test_a_program_without_echo_cannot_be_echo_checked(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.calc]
        argv = ["/bin/sleep", "{fd}"]
        schema = "mp-example"
        health = "echo"
        sandbox = "none"
        """) == ('4:10: the Init of [components.calc] (schema "mp-example") has no Echo '
                 '(hint: use health = "construct")')


def test_config_spells_the_ipc_names_as_ipc_does() -> None:
    """The config module keeps its own copy (the CLI loads configs without asyncio)."""
    assert _configipc.SCHEMAS == ipc.SCHEMAS
    assert _configipc.FD_PLACEHOLDER == ipc.FD_PLACEHOLDER
    assert _configipc.DATADIR_PLACEHOLDER == ipc.DATADIR_PLACEHOLDER
    assert set(_configipc.HEALTH_CHECKS) - {"none"} == set(ipc.PROBES)
    # The component hands the IPC layer where a user's schema is: every field it needs
    # is one the config check filled in.
    wire = {f.name for f in dataclasses.fields(ipc.ForeignInit)}
    assert wire <= {f.name for f in dataclasses.fields(_configipc.ForeignSchema)}


def _cxx(name: str, schema: str, key: str, value: str) -> str:
    return (f'[components.{name}]\nargv = ["/bin/cat", "{{fd}}"]\nschema = "{schema}"\n'
            f'sandbox = "none"\n{key} = ["{value}"]\n')


@pytest.mark.parametrize("consumer_schema", ["bitcoin-core", "mp-example"])
def test_a_capability_between_two_cxx_peers_is_refused_at_its_consumes_entry(
        tmp_path: Path, consumer_schema: str) -> None:
    """Both ends C++ libmultiprocess programs (a foreign schema): the supervisor could
    only forward the capability, and its calls would name threads of the wrong process."""
    text = (_cxx("core", "bitcoin-core", "provides", "chain")
            + _cxx("corewallet", consumer_schema, "consumes", "chain"))
    assert error_of(tmp_path, text).startswith(
        "10:13: [components.corewallet] cannot consume 'chain' from [components.core]: "
        "both are C++ libmultiprocess programs")


def test_a_cxx_peer_next_to_our_roles_keeps_the_role_refusal(tmp_path: Path) -> None:
    """Only a C++-to-C++ binding gets the forwarding reason; a C++ consumer of our
    node, or a C++ provider nobody consumes, is refused for what it is."""
    consumer = "[components.node]\n" + _cxx("corewallet", "bitcoin-core", "consumes", "chain")
    assert error_of(tmp_path, consumer).startswith(
        "6:13: [components.corewallet] cannot consume 'chain': a component without a role "
        "has no way to")
    provider = _cxx("core", "bitcoin-core", "provides", "chain")
    assert error_of(tmp_path, provider).startswith(
        "5:13: [components.core] cannot provide 'chain': a component without a role has "
        "no way to")


def test_ipcbind_is_none_or_unix(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[components.node]\nipcbind = "unix"\n'))
    assert config.component("node").options["ipcbind"] == "unix"
    assert error_of(tmp_path, '[components.node]\nipcbind = "tcp"\n').startswith(
        "2:11: unknown ipcbind 'tcp' in [components.node] (hint: allowed: 'none', 'unix')")
    assert error_of(tmp_path, '[components.wallet]\nipcbind = "unix"\n').startswith(
        "2:1: 'ipcbind' in [components.wallet] is not a setting of role 'wallet'")
