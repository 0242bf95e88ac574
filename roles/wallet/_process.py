"""The wallet process: its Init (the capability it serves) and its start/stop life cycle."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import Chain, ComponentSettings, Echo, Init, WalletLoader

from .._echo import EchoImpl
from ._rpc import WalletRpc
from ._wallet import WalletLoaderImpl


class WalletInit(Init):
    """The wallet's bootstrap capability: Echo and the WalletLoader."""

    def __init__(self, loader: WalletLoaderImpl, *, component: str = "wallet") -> None:
        self._loader = loader
        self._rpc = WalletRpc(loader).handler(component=component)

    async def make_echo(self) -> Echo:
        """Return a new Echo."""
        return EchoImpl()

    async def make_wallet_loader(self, chain: Chain) -> WalletLoader:
        """Attach ``chain`` (replacing any earlier one), register the wallet RPCs with it,
        and return the loader once attached; every loaded wallet catches up to the tip in
        the background (balance RPCs wait for it). A lost chain is logged, not raised."""
        await self._loader.attach(chain, self._rpc, self._rpc.names)
        return self._loader


class WalletProcess:
    """Life cycle of the wallet role for ``roles._main.run_role``."""

    def __init__(self) -> None:
        self.stop_requested = asyncio.Event()
        self.listeners: list[socket.socket] = []  # served on the inherited link only
        self._loader: WalletLoaderImpl | None = None

    async def start(self, settings: ComponentSettings) -> Init:
        """Load every wallet under ``<datadir>/wallets`` and return the WalletInit.

        Raises OSError if the datadir cannot be used.
        """
        loader = WalletLoaderImpl(Path(settings.datadir) / "wallets", component=settings.name)
        names = loader.load_existing()
        log.get_logger(component=settings.name).info("wallet.started", wallets=names)
        self._loader = loader
        return WalletInit(loader, component=settings.name)

    async def stop(self) -> None:
        """Close every wallet file; all acknowledged writes are already durable."""
        if self._loader is not None:
            self._loader.close()
            self._loader = None
