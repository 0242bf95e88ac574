"""Loading the project's .capnp schemas (shipped as package data) exactly once per process.

The parsed schemas end up in a ``capnp.SchemaLoader`` that holds no file descriptor.
pycapnp's ``capnp.load`` keeps KJ's parser alive for the life of the process, and the
parser owns descriptors of ``/``, the working directory, every import directory and every
schema file. A sandboxed role closes every descriptor but its IPC socket before it serves
(a leaked directory fd escapes ``pivot_root``); the parser's destructor at interpreter exit
then closed them a second time, and KJ's ``close: Bad file descriptor`` turned every
orderly exit into ``terminate called`` (SIGABRT, reported as a crash). Here the parser is a
throw-away: its nodes are copied into the loader and it is destroyed, closing its own
descriptors while they are still its own, before any sandbox step runs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import capnp
from capnp.lib import capnp as _lib

SCHEMA_DIR = Path(__file__).resolve().parent
"""The directory holding our ``*.capnp`` files and libmultiprocess's ``mp/proxy.capnp``."""

# Schemas attribute -> file, in load order: proxy.capnp first (the others import it).
FILES = {
    "proxy": "mp/proxy.capnp",
    "init": "init.capnp",
    "echo": "echo.capnp",
    "chain": "chain.capnp",
    "wallet": "wallet.capnp",
    "index": "index.capnp",
    "core": "core.capnp",  # Bitcoin Core v30's and libmultiprocess's examples' wire ids
}


@dataclass(frozen=True)
class Schemas:
    """The loaded schema modules (pycapnp objects, untyped).

    Each attribute is one file: its top-level declarations are attributes (``chain.Chain``
    with ``.schema`` and ``.Server``; structs as pycapnp struct modules) and ``.schema`` is
    the file's own schema node. ``loader`` owns all of them and must outlive every use.
    """

    proxy: Any
    init: Any
    echo: Any
    chain: Any
    wallet: Any
    index: Any
    core: Any
    loader: Any


def import_path(directory: Path = SCHEMA_DIR) -> list[str]:
    """Return the capnp import path: ``directory`` first, then pycapnp's own.

    Our directory must come first so ``/mp/proxy.capnp`` always resolves to the same file;
    a second copy under another path makes pycapnp abort the process with "Duplicate ID".
    pycapnp ships ``/capnp/c++.capnp`` inside its package, so its parent directory
    resolves that import when ``proxy.capnp`` is loaded on its own.
    """
    return [str(directory), str(Path(capnp.__file__).resolve().parent.parent)]


@functools.cache
def load_schemas() -> Schemas:
    """Load every shipped schema once and return them; later calls return the same object.

    Blocks while parsing (a few ms). Leaves no descriptor open. A broken schema aborts the
    process from C++ rather than raising, which is why the tests load them in a subprocess.
    """
    return load_schema_dir(SCHEMA_DIR)


def load_schema_dir(directory: Path) -> Schemas:
    """Parse the ``FILES`` under ``directory`` into a fresh loader (not cached).

    For tests that check a modified copy of the schemas; may abort the process (see
    ``load_schemas``), so call it in a subprocess when the files may be broken.
    """
    loader = capnp.SchemaLoader()
    file_ids = _parse_into(loader, directory)
    modules = {attr: _module(loader, file_id, FILES[attr]) for attr, file_id in file_ids.items()}
    return Schemas(loader=loader, **modules)


def _parse_into(loader: Any, directory: Path) -> dict[str, int]:
    """Copy every node reachable from ``FILES`` into ``loader``; return each file's id.

    Every pycapnp object that points into the parser is local to this function, so the
    parser (and its descriptors) is gone when it returns.
    """
    parser = capnp.SchemaParser()
    imports = import_path(directory)
    seen: set[int] = set()
    file_ids: dict[str, int] = {}
    for attr, name in FILES.items():
        parsed = parser._parse_disk_file(name, str(directory / name), imports)
        file_ids[attr] = int(parsed.get_proto().id)
        _copy(parsed, loader, seen)
    return file_ids


def _copy(schema: Any, loader: Any, seen: set[int]) -> None:
    """Load ``schema``'s node and, recursively, the nodes only reachable through it:
    nested declarations, method parameter/result structs, groups and field types
    (structs, enums and interfaces)."""
    # A field's interface type comes as an _InterfaceSchema, which has only ``node``.
    parsed = hasattr(schema, "get_proto")
    proto = schema.get_proto() if parsed else schema.node
    if proto.id in seen:
        return
    seen.add(int(proto.id))
    if parsed:
        loader.load(proto)
    else:
        loader.load_dynamic(proto)
    node = schema.node
    if hasattr(schema, "get_nested"):  # parsed schemas know their nested declarations
        for nested in node.nestedNodes:
            _copy(schema.get_nested(nested.name), loader, seen)
    kind = node.which()
    if kind == "struct":
        for field in schema.as_struct().fields_list:
            proto_field = field.proto
            # Interfaces too: a user's file reaches Proxy.ThreadMap only through a field.
            if proto_field.which() == "group" or \
                    proto_field.slot.type.which() in ("struct", "enum", "interface"):
                _copy(field.schema, loader, seen)
    elif kind == "interface":
        interface = schema.as_interface() if hasattr(schema, "as_interface") else schema
        for method in interface.methods.values():
            _copy(method.param_type, loader, seen)
            _copy(method.result_type, loader, seen)


def _module(loader: Any, node_id: int, name: str) -> Any:
    """Build pycapnp's module objects for one node and its nested declarations, the shape
    ``capnp.load`` returns (``Init.Server``, ``Block.new_message``...)."""
    schema = loader.get(node_id)
    node = schema.node
    kind = node.which()
    module: Any
    if kind == "struct":
        module = _lib._StructModule(schema.as_struct(), name)
    elif kind == "interface":
        module = _lib._InterfaceModule(schema.as_interface(), name)
    elif kind == "enum":
        module = _lib._EnumModule(schema.as_enum(), name)
    else:
        module = SimpleNamespace(schema=schema)
    for nested in node.nestedNodes:
        nested_kind = loader.get(nested.id).node.which()
        if nested_kind in ("struct", "interface", "enum"):
            setattr(module, str(nested.name), _module(loader, int(nested.id), str(nested.name)))
        elif nested_kind == "const":
            setattr(module, str(nested.name), loader.get(nested.id).as_const_value())
    return module


def load_foreign(directory: Path, file: str, init: str) -> Any:
    """Parse a user's ``file`` under ``directory`` and return its top-level interface
    ``init`` as a pycapnp interface module, or None if the file declares no interface of
    that name. Absolute imports resolve in our directory (``/mp/proxy.capnp``), then
    ``directory``, then pycapnp's. The nodes go to a loader of their own, so ours are never touched.

    A broken file (duplicate id, duplicate ordinal) may abort the process from C++: the
    supervisor runs this first in ``_schemacheck``, a throw-away process, and only after
    that passed in its own.
    """
    stat = (directory / file).stat()
    key = (str(directory), file, init, stat.st_mtime_ns, stat.st_size)
    if key in _FOREIGN:  # a restart loads nothing again, unless the file changed
        return _FOREIGN[key][1]
    loader = capnp.SchemaLoader()
    file_id = _parse_foreign(loader, directory, file)
    module = None
    for nested in loader.get(file_id).node.nestedNodes:
        if str(nested.name) == init and loader.get(nested.id).node.which() == "interface":
            module = _module(loader, int(nested.id), init)
    # Kept for the life of the process, as load_schemas' loader: a capability cast to a
    # schema whose loader was freed crashes the process (seen: SIGSEGV).
    _FOREIGN[key] = (loader, module)
    return module


_FOREIGN: dict[tuple[str, str, str, int, int], tuple[Any, Any]] = {}


def _parse_foreign(loader: Any, directory: Path, file: str) -> int:
    """Copy a user's file (and what it imports) into ``loader``; as ``_parse_into``."""
    parser = capnp.SchemaParser()
    # Ours first, as in ``import_path``: "/mp/proxy.capnp" is always our copy, so a user's
    # file that reuses its id collides here, in the check, not later.
    ours, pycapnp = import_path()
    imports = [ours, str(directory), pycapnp]
    parsed = parser._parse_disk_file(file, str(directory / file), imports)
    _copy(parsed, loader, set())
    return int(parsed.get_proto().id)
