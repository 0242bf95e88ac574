"""The reference index role: a txindex in SQLite, fed blocks through a Chain capability."""

from ._decode import decode_transaction, script_asm, script_pubkey
from ._index import INDEX_NAME, IndexImpl
from ._process import IndexInit, IndexProcess
from ._rpc import IndexRpc
from ._store import TxIndexStore, TxLocation

__all__ = [
    "INDEX_NAME",
    "IndexImpl",
    "IndexInit",
    "IndexProcess",
    "IndexRpc",
    "TxIndexStore",
    "TxLocation",
    "decode_transaction",
    "main",
    "script_asm",
    "script_pubkey",
]


def main() -> None:
    """Console entry point ``bitcoin-supervisor-index -ipcfd N``; never returns."""
    from bitcoin_supervisor.roles._main import run_role

    run_role(IndexProcess)
