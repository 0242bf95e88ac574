"""Cap'n Proto IPC: the only package that imports ``capnp`` or loads ``.capnp`` schemas.

It turns capnp clients and servers into the ``bitcoin_supervisor.interfaces`` types, so
role and supervisor code never see a capnp object (Bitcoin Core's src/ipc/capnp/). The
proxies and servers are generated from one method table (``_methods.INTERFACES``).
Importing it loads the schemas.
"""

from ._clients import CLIENTS, CapnpClient
from ._protocol import CapnpConnection, CapnpProtocol, make_capnp_protocol
from ._schema import SCHEMA_DIR, Schemas, load_foreign, load_schemas
from ._servers import SERVERS, ServerBase

__all__ = [
    "CLIENTS",
    "SCHEMA_DIR",
    "SERVERS",
    "CapnpClient",
    "CapnpConnection",
    "CapnpProtocol",
    "Schemas",
    "ServerBase",
    "load_foreign",
    "load_schemas",
    "make_capnp_protocol",
]
