"""A role waiting as a warm standby: Init served, nothing of its datadir open until activated.

The supervisor starts a second process of a wallet or an index through the same launcher
path as the running one (confined, verified, Init bootstrapped, its Chain introduced) so
that a crash of the running one is answered by promoting this one instead of starting a
process. Until ``activate`` it must not touch the datadir the running process owns: two
processes never hold the wallet's SQLite files at once. ``activate`` then does what a
normal start does first (``RoleProcess.start``) and hands every call to the real Init.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import (
    Chain,
    ChainGrant,
    ComponentSettings,
    ConsumerHealth,
    Echo,
    Index,
    Init,
    NotProvidedError,
    WalletLoader,
)

from ._echo import EchoImpl

if TYPE_CHECKING:
    from ._main import RoleProcess


class StandbyInit(Init):
    """The Init of a role started as a standby: Echo (health checks) at once, the role's
    own Init after ``activate``. ``exit_code`` resolves when activation failed: the
    process then exits with it (the supervisor's start-failure rules apply)."""

    def __init__(self, proc: RoleProcess, settings: ComponentSettings,
                 start_failure: asyncio.Future[int],
                 failure_code: Callable[[BaseException], int]) -> None:
        self._proc = proc
        self._failure_code = failure_code
        self._settings = settings
        self._active: Init | None = None
        self._activating: asyncio.Lock = asyncio.Lock()
        self.exit_code = start_failure

    async def activate(self) -> None:
        """See ``Init.activate``: ``RoleProcess.start`` once; its failure is logged, sets
        ``exit_code`` and is raised to the caller."""
        async with self._activating:
            if self._active is not None:
                return
            try:
                self._active = await self._proc.start(self._settings)
            except Exception as exc:
                code = self._failure_code(exc)
                log.get_logger().error("component.start_failed", error=str(exc),
                                       error_type=type(exc).__name__, exit_code=code,
                                       standby=True)
                if not self.exit_code.done():
                    self.exit_code.set_result(code)
                raise
            log.get_logger().info("component.activated", role=self._settings.role)

    def _role(self) -> Init:
        if self._active is None:
            raise NotProvidedError("this process is a standby: it serves after activate")
        return self._active

    async def make_echo(self) -> Echo:
        """See ``Init.make_echo`` (served before activation too)."""
        return EchoImpl() if self._active is None else await self._active.make_echo()

    async def make_chain(self, grant: ChainGrant) -> Chain:
        """See ``Init.make_chain``."""
        return await self._role().make_chain(grant)

    async def make_wallet_loader(self, chain: Chain) -> WalletLoader:
        """See ``Init.make_wallet_loader``."""
        return await self._role().make_wallet_loader(chain)

    async def make_index(self, chain: Chain) -> Index:
        """See ``Init.make_index``."""
        return await self._role().make_index(chain)

    async def consumer_health(self) -> tuple[ConsumerHealth, ...]:
        """See ``Init.consumer_health``."""
        return await self._role().consumer_health()
