"""Loading the project's .capnp schemas (shipped as package data) exactly once per process."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import capnp

SCHEMA_DIR = Path(__file__).resolve().parent
"""The directory holding our ``*.capnp`` files and libmultiprocess's ``mp/proxy.capnp``."""


@dataclass(frozen=True)
class Schemas:
    """The loaded schema modules (pycapnp objects, untyped)."""

    proxy: Any
    init: Any
    echo: Any
    chain: Any
    wallet: Any
    index: Any


def import_path() -> list[str]:
    """Return the capnp import path: our directory first, then pycapnp's own.

    Our directory must come first so ``/mp/proxy.capnp`` always resolves to the same file;
    a second copy under another path makes pycapnp abort the process with "Duplicate ID".
    pycapnp ships ``/capnp/c++.capnp`` inside its package, so its parent directory
    resolves that import when ``proxy.capnp`` is loaded on its own.
    """
    return [str(SCHEMA_DIR), str(Path(capnp.__file__).resolve().parent.parent)]


@functools.cache
def load_schemas() -> Schemas:
    """Load every schema once and return them; later calls return the same object.

    Blocks while parsing (a few ms). A broken schema aborts the process from C++ rather
    than raising, which is why the test suite loads them in a subprocess first.
    """
    imports = import_path()

    def load(name: str) -> Any:
        return capnp.load(str(SCHEMA_DIR / name), imports=imports)

    # proxy.capnp first: every other file imports it as /mp/proxy.capnp.
    return Schemas(
        proxy=load("mp/proxy.capnp"),
        init=load("init.capnp"),
        echo=load("echo.capnp"),
        chain=load("chain.capnp"),
        wallet=load("wallet.capnp"),
        index=load("index.capnp"),
    )
