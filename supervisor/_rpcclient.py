"""A bitcoin-cli-like JSON-RPC client for the node the daemon runs (the ``rpc`` verb)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitcoin_supervisor import jsonfmt
from bitcoin_supervisor.interfaces import SupervisorError

from ._config import Config


class RpcCallError(SupervisorError):
    """The node answered with a JSON-RPC error (bitcoind code and message)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"error code: {code}\nerror message:\n{message}")


@dataclass(frozen=True)
class RpcEndpoint:
    """Where the node's JSON-RPC server listens and the cookie that unlocks it."""

    host: str
    port: int
    cookie_path: Path

    @staticmethod
    def from_config(config: Config) -> RpcEndpoint:
        """Find the node component in ``config``; raises SupervisorError if there is none."""
        for component in config.components:
            if component.role == "node":
                host = str(component.options.get("rpcbind", "127.0.0.1"))
                port = int(str(component.options.get("rpcport", 18443)))
                return RpcEndpoint(host, port, component.datadir / ".cookie")
        raise SupervisorError(f"{config.path}: no component with role 'node'")


def parse_cli_params(args: list[str]) -> list[Any]:
    """Turn bitcoin-cli style arguments into JSON values: JSON if it parses, else a string."""
    params: list[Any] = []
    for arg in args:
        try:
            params.append(json.loads(arg))
        except ValueError:
            params.append(arg)
    return params


def call(endpoint: RpcEndpoint, method: str, params: list[Any], *, wallet: str | None = None,
         timeout: float = 120.0) -> Any:
    """Call ``method`` and return its result. Blocks.

    Raises RpcCallError for an RPC-level error and SupervisorError (one line) when the
    node cannot be reached or the cookie cannot be read.
    """
    try:
        cookie = endpoint.cookie_path.read_text().strip()
    except OSError as exc:
        raise SupervisorError(f"cannot read the node's cookie {endpoint.cookie_path}: "
                              f"{exc.strerror} (is the node running?)") from exc
    path = "/" if wallet is None else "/wallet/" + urllib.parse.quote(wallet, safe="")
    body = json.dumps({"jsonrpc": "1.0", "id": "bitcoin-supervisor", "method": method,
                       "params": params}).encode()
    request = urllib.request.Request(
        f"http://{endpoint.host}:{endpoint.port}{path}", data=body, method="POST",
        headers={"Content-Type": "application/json",
                 "Authorization": "Basic " + base64.b64encode(cookie.encode()).decode()})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            reply = jsonfmt.loads(response.read())
    except urllib.error.HTTPError as exc:
        # bitcoind answers RPC errors with HTTP 500/404 and a JSON body.
        try:
            reply = jsonfmt.loads(exc.read())
        except ValueError:
            raise SupervisorError(f"node answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise SupervisorError(f"cannot reach the node at {endpoint.host}:{endpoint.port}: "
                              f"{exc}") from exc
    if reply.get("error"):
        error = reply["error"]
        raise RpcCallError(int(error.get("code", -1)), str(error.get("message", "")))
    return reply.get("result")
