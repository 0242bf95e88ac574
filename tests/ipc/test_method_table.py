"""The method table, the .capnp schemas and the interfaces ABCs agree, and the check that
says so fails on each kind of drift (schemas are loaded in a subprocess: a broken one
aborts the process from C++)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import pytest

from bitcoin_supervisor.interfaces import Echo
from bitcoin_supervisor.ipc.capnp import SCHEMA_DIR
from bitcoin_supervisor.ipc.capnp._consistency import (
    Shapes,
    disagreements,
    inheritance_disagreements,
)
from bitcoin_supervisor.ipc.capnp._convert import INT64
from bitcoin_supervisor.ipc.capnp._methods import INTERFACES, Interface

DESCRIBE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from bitcoin_supervisor.ipc.capnp._consistency import describe, superclasses
    from bitcoin_supervisor.ipc.capnp._schema import load_schema_dir
    schemas = load_schema_dir(Path(sys.argv[1]))
    print(json.dumps([describe(schemas), superclasses(schemas)]))
""")


def _load(directory: Path) -> list[Any]:
    result = subprocess.run([sys.executable, "-c", DESCRIBE, str(directory)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded: list[Any] = json.loads(result.stdout)
    return loaded


def shapes_of(directory: Path) -> Shapes:
    """Load the schemas under ``directory`` in a fresh interpreter and describe them."""
    shapes: Shapes = _load(directory)[0]
    return shapes


def supers_of(directory: Path) -> dict[str, list[str]]:
    """What each interface of the schemas under ``directory`` extends (a fresh
    interpreter loads them)."""
    supers: dict[str, list[str]] = _load(directory)[1]
    return supers


@pytest.fixture(scope="module")
def shipped() -> Shapes:
    return shapes_of(SCHEMA_DIR)


def edited_schemas(tmp_path: Path, file: str, edits: dict[str, str]) -> Path:
    """A copy of the shipped schemas with ``edits`` (old text -> new text) in ``file``."""
    copy = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    text = (copy / file).read_text()
    for old, new in edits.items():
        assert old in text
        text = text.replace(old, new)
    (copy / file).write_text(text)
    return copy


def with_interface(name: str, **changes: object) -> tuple[Interface, ...]:
    """The table with the row of interface ``name`` changed."""
    return tuple(dataclasses.replace(i, **changes) if i.name == name else i
                 for i in INTERFACES)


def row(name: str) -> Interface:
    return next(i for i in INTERFACES if i.name == name)


def test_table_schemas_and_interfaces_agree(shipped: Shapes) -> None:
    assert disagreements(INTERFACES, shipped) == []
    # Every interface of every shipped schema file is covered, not just the ones we use.
    assert set(shipped) == {i.name for i in INTERFACES}


@pytest.mark.parametrize(("file", "edits", "expected"), [
    ("chain.capnp", {"height :Int32) -> (result :Text": "depth :Int32) -> (result :Text"},
     "Chain.getBlockHash: parameters ['height'] in the table, ['depth'] in the schema"),
    ("wallet.capnp", {"-> (result :Int64);": "-> (result :Int64);\n    getUnconfirmedBalance"
                      " @4 (context :Proxy.Context) -> (result :Int64);"},
     "Wallet.getUnconfirmedBalance: method in the schema but not in the table"),
    ("index.capnp", {"getInfo @0": "getInfo @1", "getTransaction @1": "getTransaction @0"},
     "Index.getInfo: ordinal @0 in the table, @1 in the schema"),
    ("echo.capnp", {"echo :Text)": "echo :Text, times :Int32)"},
     "Echo.echo: parameters ['echo'] in the table, ['echo', 'times'] in the schema"),
    ("chain.capnp", {"-> (result :BlockRef);": "-> (result :Block);"},
     "Chain.getTip: results [('result', 'BlockRef')] in the table, "
     "[('result', 'Block')] in the schema"),
    ("core.capnp", {"makeEcho @1 (context :Proxy.Context)": "makeEcho @1 ()"},
     "CoreInit.makeEcho: context parameter expected"),
    ("core.capnp", {"timeout :Float64)": "timeout :Int64)"},
     "Mining.waitTipChanged: parameter types [('currentTip', 'Data'), ('timeout', "
     "'Float64')] in the table, [('currentTip', 'Data'), ('timeout', 'Int64')] in the "
     "schema"),
])
def test_check_fails_on_an_edited_schema(tmp_path: Path, file: str, edits: dict[str, str],
                                          expected: str) -> None:
    problems = disagreements(INTERFACES, shapes_of(edited_schemas(tmp_path, file, edits)))
    assert expected in problems


def test_check_fails_on_an_edited_table(shipped: Shapes) -> None:
    chain = row("Chain")
    wallet = row("Wallet")
    dropped = with_interface("Chain", methods=chain.methods[:-1])
    assert disagreements(dropped, shipped) == [
        "Chain.handleRpc: method in the schema but not in the table",
        "Chain: Chain.handle_rpc is not in the table"]

    renamed = dataclasses.replace(chain.methods[1], params=(
        dataclasses.replace(chain.methods[1].params[0], capnp="h"),))
    table = with_interface("Chain", methods=(chain.methods[0], renamed, *chain.methods[2:]))
    assert disagreements(table, shipped) == [
        "Chain.getBlockHash: parameters ['h'] in the table, ['height'] in the schema"]

    reordered = dataclasses.replace(wallet.methods[0], ordinal=3)
    table = with_interface("Wallet", methods=(reordered, *wallet.methods[1:]))
    assert disagreements(table, shipped) == [
        "Wallet.getName: ordinal @3 in the table, @0 in the schema"]

    mistyped = dataclasses.replace(chain.methods[1], params=(
        dataclasses.replace(chain.methods[1].params[0], conv=INT64),))
    table = with_interface("Chain", methods=(chain.methods[0], mistyped, *chain.methods[2:]))
    assert disagreements(table, shipped) == [
        "Chain.getBlockHash: parameter types [('height', 'Int64')] in the table, "
        "[('height', 'Int32')] in the schema"]

    missing = tuple(i for i in INTERFACES if i.name != "Handler")
    assert disagreements(missing, shipped) == [
        "Handler: interface in the schemas but not in the table"]


class _DriftedEcho(ABC):
    """Echo as someone might edit it: a renamed parameter and a method nobody declared."""

    @abstractmethod
    async def echo(self, text: str) -> str:
        """Return ``text``."""

    @abstractmethod
    async def echo_twice(self, message: str) -> str:
        """Return ``message`` twice."""


def test_check_fails_when_an_interface_abc_drifts(shipped: Shapes) -> None:
    assert row("Echo").abc is Echo
    table = with_interface("Echo", abc=_DriftedEcho)
    assert disagreements(table, shipped) == [
        "Echo: _DriftedEcho.echo_twice is not in the table",
        "Echo.echo: parameters ['message'] in the table, ['text'] in _DriftedEcho.echo"]


def test_our_init_extends_cores_and_the_check_sees_drift(tmp_path: Path) -> None:
    """Our Init inherits construct/makeEcho/makeMining from Core's Init (that is how a
    Core-side client finds them under Core's ids); dropping ``extends`` is caught."""
    shipped = supers_of(SCHEMA_DIR)
    assert shipped["Init"] == ["CoreInit"]
    assert inheritance_disagreements(INTERFACES, shipped) == []
    edited = edited_schemas(tmp_path, "init.capnp", {
        "interface Init extends(Core.CoreInit) {": "interface Init {",
        "makeChain @0": "construct @7 (threadMap :Proxy.ThreadMap) -> "
                        "(threadMap :Proxy.ThreadMap);\n    makeChain @0"})
    assert inheritance_disagreements(INTERFACES, supers_of(edited)) == [
        "Init: extends ['CoreInit'] in the table, [] in the schema"]
