"""The reference wallet role: HD wallets in SQLite, fed blocks through a Chain capability."""

from ._process import WalletInit, WalletProcess
from ._rpc import WalletRpc
from ._wallet import Balances, WalletError, WalletImpl, WalletLoaderImpl

__all__ = [
    "Balances",
    "WalletError",
    "WalletImpl",
    "WalletInit",
    "WalletLoaderImpl",
    "WalletProcess",
    "WalletRpc",
    "main",
]


def main() -> None:
    """Console entry point ``bitcoin-supervisor-wallet -ipcfd N``; never returns."""
    from bitcoin_supervisor.roles._main import run_role

    run_role(WalletProcess)
