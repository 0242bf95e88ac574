"""A bitcoin-cli-like JSON-RPC client for the node the daemon runs (the ``rpc`` verb)."""

from __future__ import annotations

import base64
import errno
import json
import os
import re
import stat
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitcoin_supervisor import jsonfmt
from bitcoin_supervisor.interfaces import SupervisorError

from ._config import Config
from .control_protocol import Reply, StatusReply

# bitcoind's cookie: "__cookie__:" and 32 random bytes in hex, nothing else.
COOKIE_SIZE = len("__cookie__:") + 64
_COOKIE = re.compile(rb"__cookie__:[0-9a-f]{64}")


class CookieRefused(SupervisorError):
    """The cookie file is not one the node could have written honestly (a symlink, not a
    regular file, someone else's, the wrong size or shape): nothing was read from it, or
    nothing read is used."""


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
    name: str = "node"

    @staticmethod
    def from_config(config: Config) -> RpcEndpoint:
        """Find the node component in ``config``; raises SupervisorError if there is none."""
        for component in config.components:
            if component.role == "node":
                host = str(component.options.get("rpcbind", "127.0.0.1"))
                port = int(str(component.options.get("rpcport", 18443)))
                return RpcEndpoint(host, port, component.datadir / ".cookie", component.name)
        raise SupervisorError(f"{config.path}: no component with role 'node'")


def read_cookie(path: Path, owner: int) -> str:
    """Return the cookie at ``path`` (``__cookie__:<64 hex>``) if it is a regular file
    owned by ``owner`` (the uid the node runs as) and of cookie size. Blocks briefly.

    The node's datadir is the node's to write: a compromised node can put a symlink, a
    FIFO or a hard link to any file there, and the CLI (often root) would send that file's
    text to the node as the password. So: ``O_NOFOLLOW`` (no symlink is followed),
    ``O_NONBLOCK`` (a FIFO cannot hang the CLI), checks on the opened descriptor (no swap
    between check and read), and the content must look like a cookie. Raises
    CookieRefused (one line) for such a file, SupervisorError when there is no cookie.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refused(path, "it is a symbolic link") from None
        raise SupervisorError(f"cannot read the node's cookie {path}: "
                              f"{exc.strerror} (is the node running?)") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refused(path, "it is not a regular file")
        if st.st_uid != owner:
            raise _refused(path, f"it is owned by uid {st.st_uid}, not by the node's "
                                 f"uid {owner}")
        if st.st_size != COOKIE_SIZE:
            raise _refused(path, f"it has {st.st_size} bytes, a cookie has {COOKIE_SIZE}")
        data = os.read(fd, COOKIE_SIZE + 1)
    except OSError as exc:
        raise SupervisorError(f"cannot read the node's cookie {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if _COOKIE.fullmatch(data) is None:
        raise _refused(path, "its content is not a cookie")
    return data.decode("ascii")


def _refused(path: Path, why: str) -> CookieRefused:
    return CookieRefused(f"refusing the node's cookie {path}: {why}; the node may be "
                         "compromised, nothing was sent (inspect the file, then restart "
                         "the node)")


def cookie_owner(status: Reply, name: str, control_socket: Path) -> int:
    """The uid the node ``name`` runs as, which must own its cookie: the outer uid the
    daemon reports for it (a root daemon), else the daemon's own uid (an unprivileged
    daemon, or an unsandboxed node), read from the owner of the control socket the
    daemon created. Raises SupervisorError when neither can be found."""
    if isinstance(status, StatusReply):
        for comp in status.components:
            if comp.name == name and comp.sandbox is not None and comp.sandbox.uid is not None:
                return comp.sandbox.uid
    try:
        return os.stat(control_socket).st_uid
    except OSError as exc:
        raise SupervisorError(f"cannot tell which uid the node runs as: {control_socket}: "
                              f"{exc.strerror}") from exc


def parse_cli_params(args: list[str]) -> list[Any]:
    """Turn bitcoin-cli style arguments into JSON values: JSON if it parses, else a string."""
    params: list[Any] = []
    for arg in args:
        try:
            params.append(json.loads(arg))
        except ValueError:
            params.append(arg)
    return params


def call(endpoint: RpcEndpoint, method: str, params: list[Any], *, cookie_owner: int,
         wallet: str | None = None, timeout: float = 120.0) -> Any:
    """Call ``method`` and return its result. Blocks.

    The cookie is read with ``read_cookie(endpoint.cookie_path, cookie_owner)`` before
    anything is sent. Raises RpcCallError for an RPC-level error, CookieRefused for a
    cookie that fails those checks, and SupervisorError (one line) when the node cannot
    be reached or the cookie cannot be read.
    """
    cookie = read_cookie(endpoint.cookie_path, cookie_owner)
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
