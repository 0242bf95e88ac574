"""The Echo every reference role serves, to prove a link works end to end."""

from __future__ import annotations

from bitcoin_supervisor.interfaces import Echo


class EchoImpl(Echo):
    """Echo served by the reference roles."""

    async def echo(self, message: str) -> str:
        """Return ``message`` unchanged."""
        return message
