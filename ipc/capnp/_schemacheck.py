"""Load a user's Cap'n Proto schema in a throw-away process and describe its Init as JSON.

pycapnp aborts the whole process (a KJ exception turned ``terminate``) on some broken
files, e.g. a second file with an id already loaded. The supervisor therefore runs
``python -I -m bitcoin_supervisor.ipc.capnp._schemacheck DIR FILE INIT`` and loads the
file itself only once this process, which loads our schemas first exactly as the daemon
does, came back alive. Prints ``{"id": N, "methods": {name: ordinal}, "echo": bool}``
(``null`` when ``FILE`` has no interface ``INIT``); exits 1 with the loader's own one-line
message on stderr for an error the loader raises.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import capnp

from ._schema import load_foreign, load_schemas


def describe(module: Any) -> dict[str, Any]:
    """The id, method ordinals and Echo shape of a loaded Init interface module."""
    interface = module.schema
    methods = {str(m.name): i for i, m in enumerate(interface.node.interface.methods)}
    echo = False
    if "makeEcho" in interface.methods:
        result = interface.methods["makeEcho"].result_type
        for field in result.fields_list:
            if field.proto.which() == "slot" and \
                    field.proto.slot.type.which() == "interface":
                echo = "echo" in field.schema.as_interface().methods
    return {"id": int(interface.node.id), "methods": methods, "echo": echo}


def main(args: list[str]) -> int:
    """Check ``DIR FILE INIT``; returns the exit status (see the module docstring)."""
    directory, file, init = args
    load_schemas()
    try:
        module = load_foreign(Path(directory), file, init)
    except capnp.KjException as exc:
        print(str(exc.description).splitlines()[0] if exc.description else str(exc),
              file=sys.stderr)
        return 1
    print(json.dumps(None if module is None else describe(module)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
