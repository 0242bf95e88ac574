"""The table form of a component's ``schema`` key: a user's own Cap'n Proto schema,
checked in a throw-away process before the supervisor ever loads it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ._configcheck import TomlChecker, table_name

__all__ = ["ForeignSchema", "check_foreign"]

_KEYS = ("path", "file", "init")
# The check loads a few files: seconds even on a loaded machine. A bound, not a budget.
_CHECK_TIMEOUT_S = 30.0
_CHECK_MAX_OUTPUT = 64 << 10
# Spelled out here, not imported: loading a config must not import capnp.
_CHECK_MODULE = "bitcoin_supervisor.ipc.capnp._schemacheck"


@dataclass(frozen=True)
class ForeignSchema:
    """A user's schema: ``file`` in directory ``path``, whose top-level interface ``init``
    (wire id ``interface_id``) the program serves as its bootstrap. ``construct``: it has
    libmultiprocess's handshake; ``echo``: its ``makeEcho`` returns an interface with
    ``echo``."""

    path: Path
    file: str
    init: str
    interface_id: int
    construct: bool
    echo: bool


def check_foreign(checker: TomlChecker, value: Mapping[str, Any], path: tuple[str, ...],
                  base: Path) -> ForeignSchema:
    """Check a ``schema = { path, file, init }`` table (``path`` relative to ``base``):
    the file exists and loads in a separate process, and declares interface ``init``.
    Raises a located ConfigError; never loads the file in this process."""
    where = table_name(path[:-1])
    checker.keys(value, path, _KEYS)
    for key in _KEYS:
        if key not in value:
            raise checker.error(path, f"'schema' of {where} has no {key!r}",
                                'e.g. schema = { path = "schema", file = "init.capnp", '
                                'init = "Init" }', value=True)
    directory = checker.directory(value["path"], path + ("path",), base)
    file = cast(str, checker.typed(value["file"], path + ("file",), "string"))
    init = cast(str, checker.typed(value["init"], path + ("init",), "string"))
    if not directory.is_dir():
        raise checker.error(path + ("path",), f"schema directory {directory} of {where} "
                            "does not exist", value=True)
    if not (directory / file).is_file() or Path(file).is_absolute():
        raise checker.error(path + ("file",), f"schema file {file!r} of {where} is not a "
                            f"file in {directory}", "'file' is relative to 'path'", value=True)
    described = _run_check(checker, path, where, directory, file, init)
    if described is None:
        raise checker.error(path + ("init",), f"schema file {file!r} of {where} declares "
                            f"no interface {init!r}", "'init' names the top-level "
                            "interface the program serves", value=True)
    methods = described["methods"]
    return ForeignSchema(path=directory, file=file, init=init,
                         interface_id=int(described["id"]),
                         construct="construct" in methods, echo=bool(described["echo"]))


def _run_check(checker: TomlChecker, path: tuple[str, ...], where: str, directory: Path,
               file: str, init: str) -> Any:
    """Run ``_schemacheck`` and return its JSON; a located ConfigError if it failed."""
    try:
        done = subprocess.run([sys.executable, "-I", "-m", _CHECK_MODULE, str(directory),
                               file, init], capture_output=True, timeout=_CHECK_TIMEOUT_S,
                              check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise checker.error(path, f"schema of {where}: loading {file!r} took over "
                            f"{_CHECK_TIMEOUT_S:.0f} s", value=True) from None
    out, err = done.stdout[:_CHECK_MAX_OUTPUT], done.stderr[:_CHECK_MAX_OUTPUT]
    if done.returncode == 0:
        try:
            return json.loads(out)
        except ValueError:
            pass
    raise checker.error(path, f"schema of {where} does not load: {_reason(err, done)}",
                        "fix the file; it was loaded by a separate check process, never by "
                        "the daemon", value=True)


def _reason(err: bytes, done: subprocess.CompletedProcess[bytes]) -> str:
    """The loader's own message: KJ's ``file:line: failed: ...`` line when it has one."""
    lines = err.decode(errors="replace").splitlines()
    for line in lines:
        if ": failed: " in line or ": error: " in line:
            return line.split("what():", 1)[-1].strip()
    if lines:
        return lines[-1].strip()
    return f"the check exited with status {done.returncode}"
