"""Per-link settings shared by the proxies and servers of one connection, and call logging."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bitcoin_supervisor import log

_logger = log.get_logger()


@dataclass(frozen=True)
class Link:
    """What every proxy and server created on one IPC link needs to know.

    ``component`` names the peer (client side) or this process (serving side) in logs.
    ``thread`` is the peer's ``Proxy.Thread`` capability that goes into ``Context.thread``
    on every call (libmultiprocess servers refuse calls without one); None where the peer
    is one of our Python servers reached through a capability argument, which ignore it.
    """

    component: str
    debug: bool = False
    thread: Any = None

    def log_call(self, interface: str, method: str, direction: str, started: float,
                 error: str | None = None) -> None:
        """Emit one ``ipc.call`` event if this link logs calls; never raises."""
        if not self.debug:
            return
        keys: dict[str, Any] = {
            "interface": interface,
            "method": method,
            "direction": direction,
            "component": self.component,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        }
        if error is not None:
            keys["error"] = error
        _logger.info("ipc.call", **keys)
