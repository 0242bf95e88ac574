"""Cap'n Proto IPC: the only package that imports ``capnp`` or loads ``.capnp`` schemas.

It turns capnp clients and servers into the ``bitcoin_supervisor.interfaces`` types, so
role and supervisor code never see a capnp object (Bitcoin Core's src/ipc/capnp/).
Importing it loads the schemas.
"""

from ._clients import (
    CapnpChainClient,
    CapnpChainNotificationsClient,
    CapnpClient,
    CapnpEchoClient,
    CapnpHandlerClient,
    CapnpIndexClient,
    CapnpInitClient,
    CapnpRpcHandlerClient,
    CapnpWalletClient,
    CapnpWalletLoaderClient,
)
from ._protocol import CapnpConnection, CapnpProtocol, make_capnp_protocol
from ._schema import SCHEMA_DIR, Schemas, load_schemas
from ._servers import (
    ChainNotificationsServer,
    ChainServer,
    EchoServer,
    HandlerServer,
    IndexServer,
    InitServer,
    RpcHandlerServer,
    WalletLoaderServer,
    WalletServer,
)

__all__ = [
    "SCHEMA_DIR",
    "CapnpChainClient",
    "CapnpChainNotificationsClient",
    "CapnpClient",
    "CapnpConnection",
    "CapnpEchoClient",
    "CapnpHandlerClient",
    "CapnpIndexClient",
    "CapnpInitClient",
    "CapnpProtocol",
    "CapnpRpcHandlerClient",
    "CapnpWalletClient",
    "CapnpWalletLoaderClient",
    "ChainNotificationsServer",
    "ChainServer",
    "EchoServer",
    "HandlerServer",
    "IndexServer",
    "InitServer",
    "RpcHandlerServer",
    "Schemas",
    "WalletLoaderServer",
    "WalletServer",
    "load_schemas",
    "make_capnp_protocol",
]
