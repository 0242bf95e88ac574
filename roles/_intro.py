"""Direct introduction on the role side: serve or take a Chain on an introduced socket.

Every reference role gets the same two ``Init`` methods, whatever it is: the node serves
the Chain it mints for a consumer (``make_chain``: that consumer's identity, RPC names,
limits and notification queue, exactly as on a brokered Chain) on its end of the
socketpair; a wallet or an index bootstraps that Chain from its end and hands it back to
the supervisor, which gives it to ``make_wallet_loader``/``make_index`` as before. Cap'n
Proto recognises a capability coming home and unwraps it, so the role then holds the
direct link's capability and the supervisor is out of the data path.
"""

from __future__ import annotations

from bitcoin_supervisor.interfaces import (
    Chain,
    ChainGrant,
    ConsumerHealth,
    Echo,
    Handler,
    Index,
    Init,
    WalletLoader,
)
from bitcoin_supervisor.ipc import IntroInbox, Protocol


class IntroducingInit(Init):
    """A role's Init plus ``serve_chain``/``connect_chain`` over its introduction inbox."""

    def __init__(self, init: Init, inbox: IntroInbox, protocol: Protocol, *, name: str,
                 debug: bool = False) -> None:
        self._init = init
        self._inbox = inbox
        self._protocol = protocol
        self._name = name
        self._debug = debug

    async def make_echo(self) -> Echo:
        """See ``Init.make_echo``."""
        return await self._init.make_echo()

    async def make_chain(self, grant: ChainGrant) -> Chain:
        """See ``Init.make_chain``."""
        return await self._init.make_chain(grant)

    async def make_wallet_loader(self, chain: Chain) -> WalletLoader:
        """See ``Init.make_wallet_loader``."""
        return await self._init.make_wallet_loader(chain)

    async def make_index(self, chain: Chain) -> Index:
        """See ``Init.make_index``."""
        return await self._init.make_index(chain)

    async def consumer_health(self) -> tuple[ConsumerHealth, ...]:
        """See ``Init.consumer_health``."""
        return await self._init.consumer_health()

    async def activate(self) -> None:
        """See ``Init.activate``."""
        await self._init.activate()

    async def serve_chain(self, grant: ChainGrant, channel: int) -> Handler:
        """See ``Init.serve_chain``: the grant is checked (minted) before the socket is
        taken, so a refused grant leaves the introduced socket unclaimed."""
        chain = await self._init.make_chain(grant)
        sock = await self._inbox.take(channel)
        return await self._protocol.serve_chain(
            sock, chain, name=self._name, peer=grant.consumer,
            max_message_bytes=grant.limits.max_message_bytes, debug=self._debug)

    async def connect_chain(self, channel: int) -> Chain:
        """See ``Init.connect_chain``."""
        sock = await self._inbox.take(channel)
        return await self._protocol.connect_chain(sock, peer="provider", debug=self._debug)
