"""Abstract role interfaces (Bitcoin Core's src/interfaces/): no IPC in here.

Every method is a coroutine because any of these objects may live in another process.
When the object is remote, every method may also raise ``PeerGoneError`` (the link broke)
or ``RemoteError`` (the remote code raised); those are not repeated on each method.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from ._errors import NotProvidedError
from ._types import (
    Block,
    BlockRef,
    ChainGrant,
    ConsumerHealth,
    IndexedTransaction,
    IndexInfo,
    RpcRequest,
    RpcResponse,
)


class Handler(ABC):
    """A registration (notifications, RPC methods) that can be cancelled."""

    @abstractmethod
    async def disconnect(self) -> None:
        """Cancel the registration. Idempotent: a second call does nothing."""


class Echo(ABC):
    """Test interface: proves a link works end to end."""

    @abstractmethod
    async def echo(self, message: str) -> str:
        """Return ``message`` unchanged."""


class ChainNotifications(ABC):
    """Callbacks a client of ``Chain`` registers to follow the active chain.

    The node calls them one at a time, in chain order, each within the consumer's
    deadline; blocks that pile up beyond its queue are coalesced into the newest one, so
    a receiver must catch up on heights it was not told about (``Chain.get_block``).
    """

    @abstractmethod
    async def block_connected(self, block: Block) -> None:
        """``block`` became the new tip. Returns once the receiver has processed it."""

    @abstractmethod
    async def block_disconnected(self, block: Block) -> None:
        """``block`` was removed from the tip (reorg or invalidation)."""


class RpcHandler(ABC):
    """A JSON-RPC executor a component registers with the node (``Chain.handle_rpc``)."""

    @abstractmethod
    async def execute(self, request: RpcRequest) -> RpcResponse:
        """Run one RPC call. RPC-level failures come back as an error response with a
        bitcoind error code, never as an exception."""


class Chain(ABC):
    """The node's view of the active chain, handed to wallet and index by the supervisor."""

    @abstractmethod
    async def get_tip(self) -> BlockRef:
        """Return the current tip (the genesis block on a fresh regtest chain)."""

    @abstractmethod
    async def get_block_hash(self, height: int) -> str | None:
        """Return the hash of the active-chain block at ``height``, or None above the tip.

        Raises InvalidArgumentError for a negative height."""

    @abstractmethod
    async def get_block(self, height: int) -> Block | None:
        """Return the active-chain block at ``height``, or None above the tip.

        Raises InvalidArgumentError for a negative height."""

    @abstractmethod
    async def handle_notifications(self, notifications: ChainNotifications) -> Handler:
        """Start calling ``notifications`` for every block connected from now on.

        Blocks connected before the call are not replayed: the caller catches up with
        ``get_block``. The registration ends when the handler is disconnected or the
        notifications object becomes unreachable.
        """

    @abstractmethod
    async def handle_rpc(self, methods: list[str], handler: RpcHandler) -> Handler:
        """Route the node's JSON-RPC calls for ``methods`` to ``handler``.

        A later registration of the same method name by the same consumer replaces the
        earlier one. Raises RpcNameNotAllowedError for a name the consumer's grant does
        not list, RpcNameOwnedError for a name another component owns (the node's own
        methods included), LimitExceededError past the consumer's limits and
        InvalidArgumentError for an empty or over-long name; nothing is registered then.
        """


class Wallet(ABC):
    """One named wallet inside the wallet process."""

    @abstractmethod
    async def get_name(self) -> str:
        """Return the wallet's name."""

    @abstractmethod
    async def get_new_address(self, label: str = "") -> str:
        """Derive, store durably and return a fresh bech32 (regtest: ``bcrt1…``) address."""

    @abstractmethod
    async def get_balance(self) -> int:
        """Return the trusted, mature balance in satoshis (bitcoind ``getbalance``)."""

    @abstractmethod
    async def get_last_block(self) -> BlockRef | None:
        """Return the last block the wallet has processed, or None before any."""


class WalletLoader(ABC):
    """Creates and finds wallets in the wallet process."""

    @abstractmethod
    async def create_wallet(self, name: str) -> Wallet:
        """Create, persist and load a new wallet; raises if ``name`` exists already."""

    @abstractmethod
    async def get_wallet(self, name: str) -> Wallet | None:
        """Return the loaded wallet called ``name``, or None."""

    @abstractmethod
    async def list_wallets(self) -> list[str]:
        """Return the names of the loaded wallets, sorted."""


class Index(ABC):
    """A transaction index kept in the index process."""

    @abstractmethod
    async def get_info(self) -> IndexInfo:
        """Return the index's name, best height and whether it has caught up."""

    @abstractmethod
    async def get_transaction(self, txid: str) -> IndexedTransaction | None:
        """Return the confirmed transaction ``txid`` (hex), or None if unknown."""


class Mining(ABC):
    """Bitcoin Core's ``interfaces::Mining`` (the part our node serves): what a mining
    client such as a Stratum v2 template provider asks of a node."""

    @abstractmethod
    async def is_test_chain(self) -> bool:
        """Return True on a test chain (regtest, testnet, signet)."""

    @abstractmethod
    async def is_initial_block_download(self) -> bool:
        """Return True while the node is still catching up with the network."""

    @abstractmethod
    async def get_tip(self) -> BlockRef | None:
        """Return the current tip, or None before the node has one."""

    @abstractmethod
    async def wait_tip_changed(self, current_tip: str, timeout_ms: float) -> BlockRef:
        """Wait until the tip's hash differs from ``current_tip`` (display hex) or
        ``timeout_ms`` milliseconds passed (infinite or huge: no limit), then return the
        tip. Returns at once when the tip already differs. Does not block the caller's
        event loop while it waits."""


class Init(ABC):  # noqa: B024 - every make_* has a default; roles override some
    """The bootstrap capability every component serves on its IPC link.

    A role overrides the ``make_*`` methods it provides; the others raise
    ``NotProvidedError``. Calling ``make_wallet_loader``/``make_index`` again with a new
    ``chain`` (after the node restarted) switches the component over to that chain and
    makes it catch up on blocks it missed.
    """

    async def make_echo(self) -> Echo:
        """Return an Echo object served by this component."""
        raise NotProvidedError("this component does not provide Echo")

    async def make_mining(self) -> Mining:
        """Return Bitcoin Core's Mining interface over this component's chain (node
        role only)."""
        raise NotProvidedError("this component does not provide Mining")

    async def make_chain(self, grant: ChainGrant) -> Chain:
        """Return a Chain minted for ``grant.consumer`` (node role only): it may register
        only ``grant.rpc_methods`` and stays within ``grant.limits``. Raises
        RpcNameOwnedError when the grant lists a name already granted to another
        consumer."""
        raise NotProvidedError("this component does not provide Chain")

    async def make_wallet_loader(self, chain: Chain) -> WalletLoader:
        """Attach ``chain`` and return the WalletLoader (wallet role only)."""
        raise NotProvidedError("this component does not provide WalletLoader")

    async def make_index(self, chain: Chain) -> Index:
        """Attach ``chain`` and return the Index (index role only)."""
        raise NotProvidedError("this component does not provide Index")

    async def serve_chain(self, grant: ChainGrant, channel: int) -> Handler:
        """Serve the Chain minted for ``grant`` (as ``make_chain`` would) on the socket
        the supervisor introduced as ``channel`` (node role with an introduction
        channel only); the consumer at the other end then calls the node directly.
        Returns at once, with a Handler whose ``disconnect`` revokes the link (closes it).
        Raises IpcError when no socket arrives as ``channel`` within a few seconds, and
        what ``make_chain`` raises."""
        raise NotProvidedError("this component cannot serve an introduced Chain")

    async def consumer_health(self) -> tuple[ConsumerHealth, ...]:
        """How each consumer of this provider's Chain keeps up with its notifications
        (node role only): one entry per consumer with a notification registration."""
        raise NotProvidedError("this component has no consumers")

    async def connect_chain(self, channel: int) -> Chain:
        """Return the Chain served at the other end of the socket the supervisor
        introduced as ``channel`` (a consumer with an introduction channel only); its
        calls go straight to the provider. Raises IpcError when no socket arrives as
        ``channel`` within a few seconds or the provider is gone."""
        raise NotProvidedError("this component cannot take an introduced Chain")

    async def activate(self) -> None:
        """Leave the standby state (a role started with ``ComponentSettings.standby``):
        open its datadir's state, so that ``make_wallet_loader``/``make_index`` serve.
        Returns once open, at once when already active; raises RemoteError when the state
        cannot be opened (the process then exits with its start-failure code)."""
        raise NotProvidedError("this component cannot wait as a standby")
