"""Wallets and the loader that owns them: keys, balances, and following the chain."""

from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import (
    BlockRef,
    Chain,
    Handler,
    IpcError,
    RpcHandler,
    SupervisorError,
    Wallet,
    WalletLoader,
)

from .._follower import ChainFollower, register_rpc
from ._keys import KeyChain, new_seed
from ._store import STAGING_SUFFIX, WALLET_FILE, Output, WalletStore

COINBASE_MATURITY = 100
_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,63}")


class WalletError(SupervisorError):
    """A wallet operation was refused; ``code`` is the matching bitcoind RPC error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Balances:
    """Satoshi totals with bitcoind's meaning (all outputs here are confirmed)."""

    trusted: int
    immature: int


class WalletImpl(Wallet):
    """One loaded wallet: its keys, its SQLite file, and the follower feeding it blocks."""

    def __init__(self, name: str, store: WalletStore, *, component: str) -> None:
        self._name = name
        self._store = store
        self._keys = KeyChain(store.seed())
        self._log = log.get_logger(component=component, wallet=name)
        self.follower = ChainFollower(store, component=component, subject=f"wallet:{name}")

    async def get_name(self) -> str:
        """Return the wallet's name."""
        return self._name

    async def get_new_address(self, label: str = "") -> str:
        """Derive m/84'/1'/0'/0/i for the next i, commit it, return its bcrt1 address.

        Durable once returned. Blocks on one fsync.
        """
        derived = self._keys.derive(self._store.next_index())
        self._store.add_address(derived, label)
        self._log.info("address.created", index=derived.index)
        return derived.address

    async def get_balance(self) -> int:
        """Return the trusted, mature balance in satoshis."""
        return self.balances().trusted

    async def get_last_block(self) -> BlockRef | None:
        """Return the last block the wallet has processed, or None before any."""
        return self._store.last_block()

    def balances(self, minconf: int = 0) -> Balances:
        """Return trusted (mature, >= ``minconf`` confirmations) and immature totals."""
        trusted = immature = 0
        for out, depth in self.unspent():
            if out.coinbase and depth <= COINBASE_MATURITY:
                immature += out.value
            elif depth >= minconf:
                trusted += out.value
        return Balances(trusted=trusted, immature=immature)

    def spendable(self) -> list[tuple[Output, int]]:
        """Return (output, confirmations) for outputs spendable now: immature coinbase
        outputs (<= 100 confirmations) are left out, as bitcoind does."""
        return [(out, depth) for out, depth in self.unspent()
                if not (out.coinbase and depth <= COINBASE_MATURITY)]

    def unspent(self) -> list[tuple[Output, int]]:
        """Return every unspent output with its depth at the last processed block."""
        last = self._store.last_block()
        tip = -1 if last is None else last.height
        return [(out, tip - out.height + 1) for out in self._store.unspent()]

    def owns(self, address: str) -> bool:
        """True if ``address`` was handed out by this wallet."""
        return self._store.has_address(address)

    @property
    def receive_descriptor(self) -> str:
        """The wallet's ranged receive descriptor, with checksum."""
        return self._keys.receive_descriptor

    @property
    def store(self) -> WalletStore:
        """The wallet's durable state (read access for RPC reporting)."""
        return self._store

    def close(self) -> None:
        """Stop following without remote calls and close the file."""
        self.follower.forget()
        self._store.close()


class WalletLoaderImpl(WalletLoader):
    """Owns every wallet under ``<datadir>/wallets`` and attaches them to the chain."""

    def __init__(self, walletdir: Path, *, component: str = "wallet") -> None:
        self._dir = walletdir
        self._component = component
        self._wallets: dict[str, WalletImpl] = {}
        self._chain: Chain | None = None
        self._rpc: Handler | None = None
        self._lock = asyncio.Lock()
        self._log = log.get_logger(component=component)

    def load_existing(self) -> list[str]:
        """Load every complete wallet found on disk; returns their names. A wallet that
        fails to open is logged (``wallet.load_failed``) and skipped."""
        self._dir.mkdir(parents=True, exist_ok=True)
        for entry in sorted(self._dir.iterdir()):
            if entry.name.startswith(".") and entry.name.endswith(STAGING_SUFFIX):
                shutil.rmtree(entry, ignore_errors=True)  # an interrupted create_wallet
            elif (entry / WALLET_FILE).is_file() and entry.name not in self._wallets:
                try:
                    self._wallets[entry.name] = self._open(entry.name)
                except (OSError, LookupError, ValueError) as exc:
                    self._log.error("wallet.load_failed", wallet=entry.name, error=str(exc))
        return sorted(self._wallets)

    async def attach(self, chain: Chain, rpc: RpcHandler, methods: list[str]) -> None:
        """Switch to ``chain``: register ``methods`` -> ``rpc`` with it, then start each
        wallet's catch-up (in the background). Never raises IpcError (a lost link is
        logged)."""
        self._chain = chain
        self._rpc = await register_rpc(chain, methods, rpc, self._rpc, self._log)
        for wallet in list(self._wallets.values()):
            await wallet.follower.attach(chain)

    async def caught_up(self) -> None:
        """Return once every loaded wallet's catch-up has ended. Never raises."""
        for wallet in list(self._wallets.values()):
            await wallet.follower.caught_up()

    async def create_wallet(self, name: str) -> Wallet:
        """Create, persist, load and attach a new wallet.

        Raises WalletError (-4) if the name is invalid or the wallet exists.
        """
        async with self._lock:
            _check_name(name)
            if name in self._wallets or (self._dir / name).exists():
                raise WalletError(-4, f"Wallet file verification failed. Failed to create "
                                      f"database path '{name}'. Database already exists.")
            birth = await self._tip()
            store = WalletStore.create(self._dir / name, new_seed(), birth)
            wallet = WalletImpl(name, store, component=self._component)
            self._wallets[name] = wallet
            self._log.info("wallet.created", wallet=name)
        await self._follow(wallet)
        return wallet

    async def load_wallet(self, name: str) -> WalletImpl:
        """Load a wallet from disk and attach it; raises WalletError -35 if loaded
        already, -18 if there is no such wallet."""
        async with self._lock:
            if name in self._wallets:
                raise WalletError(-35, f'Wallet "{name}" is already loaded.')
            if not _NAME.fullmatch(name) or not (self._dir / name / WALLET_FILE).is_file():
                raise WalletError(-18, f"Wallet file verification failed. Failed to load "
                                       f"database path '{name}'. Path does not exist.")
            wallet = self._open(name)
            self._wallets[name] = wallet
        await self._follow(wallet)
        return wallet

    async def unload_wallet(self, name: str) -> None:
        """Stop following and close ``name``; raises WalletError -18 if not loaded."""
        wallet = self._wallets.pop(name, None)
        if wallet is None:
            raise WalletError(-18, "Requested wallet does not exist or is not loaded")
        await wallet.follower.detach()
        wallet.close()
        self._log.info("wallet.unloaded", wallet=name)

    async def get_wallet(self, name: str) -> WalletImpl | None:
        """Return the loaded wallet ``name``, or None."""
        return self._wallets.get(name)

    async def list_wallets(self) -> list[str]:
        """Return the loaded wallets' names, sorted."""
        return sorted(self._wallets)

    def close(self) -> None:
        """Close every wallet file without remote calls (the link may be gone)."""
        for wallet in self._wallets.values():
            wallet.close()
        self._wallets.clear()
        self._chain = None

    def _open(self, name: str) -> WalletImpl:
        wallet = WalletImpl(name, WalletStore.open(self._dir / name), component=self._component)
        self._log.info("wallet.loaded", wallet=name)
        return wallet

    async def _follow(self, wallet: WalletImpl) -> None:
        if self._chain is not None:
            await wallet.follower.attach(self._chain)

    async def _tip(self) -> BlockRef | None:
        if self._chain is None:
            return None
        try:
            return await self._chain.get_tip()
        except IpcError as exc:
            self._log.warning("chain.lost", error=str(exc), during="get_tip")
            return None


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise WalletError(-4, f"Invalid wallet name {name!r}: use up to 64 letters, digits, "
                              "'.', '_' or '-', not starting with '.'")

