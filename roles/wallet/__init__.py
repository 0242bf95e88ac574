"""The reference wallet role: HD wallets in SQLite, fed blocks through a Chain capability.

Also the home of the chain-following and JSON-RPC plumbing the index role reuses.
"""

from ._db import open_database, transaction
from ._follower import BlockStore, ChainFollower, InvalidBlockError, parse_block, register_rpc
from ._jsonrpc import MethodTable, RpcError, bind, btc, dumps, expect
from ._process import EchoImpl, WalletInit, WalletProcess
from ._rpc import WalletRpc
from ._wallet import Balances, WalletError, WalletImpl, WalletLoaderImpl

__all__ = [
    "Balances",
    "BlockStore",
    "ChainFollower",
    "EchoImpl",
    "InvalidBlockError",
    "MethodTable",
    "RpcError",
    "WalletError",
    "WalletImpl",
    "WalletInit",
    "WalletLoaderImpl",
    "WalletProcess",
    "WalletRpc",
    "bind",
    "btc",
    "dumps",
    "expect",
    "main",
    "open_database",
    "parse_block",
    "register_rpc",
    "transaction",
]


def main() -> None:
    """Console entry point ``bitcoin-supervisor-wallet -ipcfd N``; never returns."""
    from bitcoin_supervisor.roles._main import run_role

    run_role(WalletProcess)
