"""The IPC methods, declared once: the table that drives every client proxy and server.

One row per capnp method says which ``interfaces`` method it carries, its ordinal, how
each parameter and the result convert, and which of them are capabilities.
``_clients`` builds the proxies and ``_servers`` the capnp servers from it; nothing else
names a method. ``tests/ipc/test_method_table.py`` fails when this table, the ``.capnp``
schemas and the ``interfaces`` ABCs disagree (``_consistency.disagreements``).
"""

from __future__ import annotations

from dataclasses import dataclass

from bitcoin_supervisor.interfaces import (
    Chain,
    ChainNotifications,
    Echo,
    Handler,
    Index,
    Init,
    Mining,
    RpcHandler,
    Wallet,
    WalletLoader,
)

from ._convert import (
    BLOCK,
    BLOCK_REF,
    BOOL,
    CHAIN_GRANT,
    CHAIN_HEALTH,
    CORE_BLOCK_REF,
    FLOAT64,
    INDEX_INFO,
    INDEXED_TRANSACTION,
    INT32,
    INT64,
    RPC_REQUEST,
    RPC_RESPONSE,
    TEXT,
    TEXT_LIST,
    UINT32,
    UINT256,
    Capability,
    Converter,
)


@dataclass(frozen=True)
class Param:
    """One parameter: its name in the ABC method, its capnp field name, its converter."""

    name: str
    capnp: str
    conv: Converter


@dataclass(frozen=True)
class Method:
    """One capnp method.

    ``name`` is the ``interfaces`` method it carries; None for libmultiprocess's own
    protocol methods (``construct``, ``destroy``), which no ABC has and ``_servers``
    answers itself. ``context``: the first capnp parameter is a ``Proxy.Context``
    (libmultiprocess convention) whose ``thread`` the client fills. ``optional``: the
    result travels with ``hasResult`` and None stands for "no result".
    """

    ordinal: int
    capnp: str
    name: str | None
    params: tuple[Param, ...] = ()
    result: Converter | None = None
    optional: bool = False
    context: bool = True
    result_field: str = "result"


@dataclass(frozen=True)
class Interface:
    """One capnp interface: the schema file that declares it and the ABC it carries.

    ``abc`` is None for libmultiprocess's ``ThreadMap``/``Thread``, which only this
    package implements (``_servers``). ``partial``: the interface carries only some of
    the ABC's methods (another program's Init); the rest keep the ABC's defaults, which
    raise ``NotProvidedError``.
    """

    name: str
    file: str
    abc: type | None
    methods: tuple[Method, ...]
    partial: bool = False
    extends: str | None = None  # the interface it inherits methods from (capnp extends)


def p(name: str, conv: Converter, capnp: str | None = None) -> Param:
    """A parameter whose capnp name is ``capnp`` (default: the same as ``name``)."""
    return Param(name, name if capnp is None else capnp, conv)


def cap(interface: str) -> Capability:
    """A capability of ``interface`` (a row of this table)."""
    return Capability(interface)


INTERFACES: tuple[Interface, ...] = (
    Interface("ThreadMap", "proxy", None, (
        Method(0, "makeThread", "make_thread", (p("name", TEXT),), cap("Thread"),
               context=False),
        Method(1, "makePool", None, (p("count", UINT32),), context=False),
    )),
    Interface("Thread", "proxy", None, (
        Method(0, "getName", "get_name", (), TEXT, context=False),
    )),
    Interface("Echo", "echo", Echo, (
        Method(0, "destroy", None),
        Method(1, "echo", "echo", (p("message", TEXT, "echo"),), TEXT),
    )),
    Interface("Handler", "chain", Handler, (
        Method(0, "disconnect", "disconnect"),
    )),
    Interface("ChainNotifications", "chain", ChainNotifications, (
        Method(0, "blockConnected", "block_connected", (p("block", BLOCK),)),
        Method(1, "blockDisconnected", "block_disconnected", (p("block", BLOCK),)),
    )),
    Interface("RpcHandler", "chain", RpcHandler, (
        Method(0, "execute", "execute", (p("request", RPC_REQUEST),), RPC_RESPONSE),
    )),
    Interface("Chain", "chain", Chain, (
        Method(0, "getTip", "get_tip", (), BLOCK_REF),
        Method(1, "getBlockHash", "get_block_hash", (p("height", INT32),), TEXT,
               optional=True),
        Method(2, "getBlock", "get_block", (p("height", INT32),), BLOCK, optional=True),
        Method(3, "handleNotifications", "handle_notifications",
               (p("notifications", cap("ChainNotifications")),), cap("Handler")),
        Method(4, "handleRpc", "handle_rpc",
               (p("methods", TEXT_LIST), p("handler", cap("RpcHandler"))), cap("Handler")),
    )),
    Interface("WalletLoader", "wallet", WalletLoader, (
        Method(0, "createWallet", "create_wallet", (p("name", TEXT),), cap("Wallet")),
        Method(1, "getWallet", "get_wallet", (p("name", TEXT),), cap("Wallet"),
               optional=True),
        Method(2, "listWallets", "list_wallets", (), TEXT_LIST),
    )),
    Interface("Wallet", "wallet", Wallet, (
        Method(0, "getName", "get_name", (), TEXT),
        Method(1, "getNewAddress", "get_new_address", (p("label", TEXT),), TEXT),
        Method(2, "getBalance", "get_balance", (), INT64),
        Method(3, "getLastBlock", "get_last_block", (), BLOCK_REF, optional=True),
    )),
    Interface("Index", "index", Index, (
        Method(0, "getInfo", "get_info", (), INDEX_INFO),
        Method(1, "getTransaction", "get_transaction", (p("txid", TEXT),),
               INDEXED_TRANSACTION, optional=True),
    )),
    # Ours extends Bitcoin Core's Init (CoreInit below): construct, makeEcho and
    # makeMining are inherited under Core's wire ids; these ordinals are the extension's.
    Interface("Init", "init", Init, (
        Method(0, "makeChain", "make_chain", (p("grant", CHAIN_GRANT),), cap("Chain")),
        Method(1, "makeWalletLoader", "make_wallet_loader", (p("chain", cap("Chain")),),
               cap("WalletLoader")),
        Method(2, "makeIndex", "make_index", (p("chain", cap("Chain")),), cap("Index")),
        Method(3, "serveChain", "serve_chain",
               (p("grant", CHAIN_GRANT), p("channel", UINT32)), cap("Handler")),
        Method(4, "connectChain", "connect_chain", (p("channel", UINT32),), cap("Chain")),
        Method(5, "consumerHealth", "consumer_health", (), CHAIN_HEALTH),
        Method(6, "activate", "activate"),
    ), extends="CoreInit"),
)

# Other programs' interfaces under their own wire ids (core.capnp): what the supervisor
# calls on a real bitcoin-node or a libmultiprocess example program.
_CONSTRUCT = Method(0, "construct", None, (p("thread_map", cap("ThreadMap"), "threadMap"),),
                    cap("ThreadMap"), context=False, result_field="threadMap")
FOREIGN: tuple[Interface, ...] = (
    Interface("CoreInit", "core", Init, (
        _CONSTRUCT,
        Method(1, "makeEcho", "make_echo", (), cap("Echo")),
        Method(2, "makeMining", "make_mining", (), cap("Mining")),
    ), partial=True),
    Interface("Mining", "core", Mining, (
        Method(0, "isTestChain", "is_test_chain", (), BOOL),
        Method(1, "isInitialBlockDownload", "is_initial_block_download", (), BOOL),
        Method(2, "getTip", "get_tip", (), CORE_BLOCK_REF, optional=True),
        Method(3, "waitTipChanged", "wait_tip_changed",
               (p("current_tip", UINT256, "currentTip"), p("timeout_ms", FLOAT64, "timeout")),
               CORE_BLOCK_REF),
    )),
    Interface("MpExampleInit", "core", Init, (_CONSTRUCT,), partial=True),
)
INTERFACES += FOREIGN

BY_NAME: dict[str, Interface] = {interface.name: interface for interface in INTERFACES}


def all_methods(interface: Interface) -> tuple[Method, ...]:
    """The methods a client or server of ``interface`` has: those it inherits (capnp
    ``extends``, transitively) first, then its own."""
    inherited = () if interface.extends is None else all_methods(BY_NAME[interface.extends])
    return inherited + interface.methods
