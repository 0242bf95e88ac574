"""The reference node role: a regtest chain with bitcoind's JSON-RPC, serving Chain over IPC."""

from ._blockstore import BlockStoreError
from ._chain import NodeChain
from ._consensus import GENESIS_HASH
from ._process import NodeInit, NodeProcess
from ._rpc_server import RpcServer

__all__ = [
    "GENESIS_HASH",
    "BlockStoreError",
    "NodeChain",
    "NodeInit",
    "NodeProcess",
    "RpcServer",
    "main",
]


def main() -> None:
    """Entry point of ``bitcoin-supervisor-node``: ``<exe> -ipcfd N``. Never returns."""
    from bitcoin_supervisor.roles._main import run_role

    run_role(NodeProcess)
