"""Continuous JSON-RPC load on a running system: what each call acknowledged is recorded,
so the checks afterwards can prove that nothing acknowledged was lost."""

from __future__ import annotations

import base64
import http.client
import json
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WALLET = "chaos"


class RpcFault(Exception):
    """The node answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Unreachable(Exception):
    """No JSON-RPC answer: the node is down, restarting, or answered something else."""


class NodeRpc:
    """A keep-alive JSON-RPC client for one thread; re-reads the cookie on reconnect
    (a restarted node writes a new one)."""

    def __init__(self, port: int, cookie: Path, timeout: float = 60.0) -> None:
        self._port = port
        self._cookie = cookie
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._auth = ""
        self.non_json: list[str] = []  # replies that were not JSON-RPC (plain-text 500s)

    def call(self, method: str, *params: Any, wallet: str | None = None) -> Any:
        """Return the result; raises RpcFault for an RPC error, Unreachable otherwise."""
        body = json.dumps({"jsonrpc": "1.0", "id": 1, "method": method,
                           "params": list(params)})
        path = "/" if wallet is None else f"/wallet/{wallet}"
        try:
            conn = self._connect()
            conn.request("POST", path, body, {"Authorization": self._auth,
                                              "Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise Unreachable(f"{method}: {exc!r}") from None
        if status == 401:
            self.close()
            raise Unreachable(f"{method}: 401 (cookie changed)")
        try:
            reply = json.loads(data)
            error = reply["error"]
        except (ValueError, KeyError, TypeError):
            self.non_json.append(f"{method}: HTTP {status} {data[:200]!r}")
            self.close()
            raise Unreachable(f"{method}: HTTP {status} not JSON-RPC") from None
        if error:
            raise RpcFault(int(error["code"]), str(error["message"]))
        return reply["result"]

    def batch(self, method: str, params: list[list[Any]], wallet: str | None = None
              ) -> list[Any]:
        """Call ``method`` once per params list in one JSON-RPC batch; results in order.
        Raises RpcFault for the first failed element, Unreachable as ``call``."""
        body = json.dumps([{"jsonrpc": "1.0", "id": i, "method": method, "params": p}
                           for i, p in enumerate(params)])
        path = "/" if wallet is None else f"/wallet/{wallet}"
        try:
            conn = self._connect()
            conn.request("POST", path, body, {"Authorization": self._auth})
            replies = json.loads(conn.getresponse().read())
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.close()
            raise Unreachable(f"{method} batch: {exc!r}") from None
        for reply in replies:
            if reply["error"]:
                raise RpcFault(int(reply["error"]["code"]), str(reply["error"]["message"]))
        return [r["result"] for r in sorted(replies, key=lambda r: r["id"])]

    def _connect(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cookie = self._cookie.read_text().strip()
            self._auth = "Basic " + base64.b64encode(cookie.encode()).decode()
            self._conn = http.client.HTTPConnection("127.0.0.1", self._port,
                                                    timeout=self._timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass
class Acknowledged:
    """Everything the system said it did, plus what went wrong on the way."""

    addresses: list[str] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)
    lookups: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    non_json: list[str] = field(default_factory=list)
    # A Condition so that a waiter wakes when something is acknowledged, not on a timer.
    lock: threading.Condition = field(default_factory=threading.Condition)

    def wait_until(self, predicate: Callable[[Acknowledged], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` holds (re-checked at each acknowledgement);
        False after ``timeout`` seconds."""
        with self.lock:
            return self.lock.wait_for(lambda: predicate(self), timeout)

    def error(self, kind: str, exc: Exception) -> None:
        key = kind + ": " + (f"{exc.code} {exc.message[:60]}" if isinstance(exc, RpcFault)
                             else type(exc).__name__)
        with self.lock:
            self.errors[key] += 1


class Load:
    """Three threads calling the wallet, the node's miner and the index until stopped."""

    def __init__(self, port: int, cookie: Path, mining_address: str) -> None:
        self._port = port
        self._cookie = cookie
        self._address = mining_address
        self._stop = threading.Event()
        self.acked = Acknowledged()
        self._threads = [threading.Thread(target=self._loop, args=(fn,), daemon=True,
                                          name=fn.__name__)
                         for fn in (self._wallet, self._miner, self._index)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)
            assert not thread.is_alive(), f"load thread {thread.name} hangs"

    def _loop(self, step: Callable[[NodeRpc], None]) -> None:
        rpc = NodeRpc(self._port, self._cookie)
        rng = random.Random(step.__name__)
        try:
            while not self._stop.is_set():
                try:
                    step(rpc)
                except (RpcFault, Unreachable) as exc:
                    self.acked.error(step.__name__, exc)
                    # Down or restarting: wait a little (interruptibly) before the next try.
                    self._stop.wait(rng.uniform(0.005, 0.03))
        finally:
            with self.acked.lock:
                self.acked.non_json += rpc.non_json
            rpc.close()

    def _wallet(self, rpc: NodeRpc) -> None:
        address = rpc.call("getnewaddress", wallet=WALLET)
        with self.acked.lock:
            self.acked.addresses.append(address)
            self.acked.lock.notify_all()

    def _miner(self, rpc: NodeRpc) -> None:
        hashes = rpc.call("generatetoaddress", 1, self._address)
        with self.acked.lock:
            self.acked.blocks += hashes
            self.acked.lock.notify_all()

    def _index(self, rpc: NodeRpc) -> None:
        with self.acked.lock:
            blocks = list(self.acked.blocks[-50:])
        if not blocks:
            self._stop.wait(0.01)
            return
        block_hash = random.choice(blocks)
        txid = rpc.call("getblock", block_hash, 1)["tx"][0]
        found = rpc.call("getrawtransaction", txid, True)
        with self.acked.lock:
            self.acked.lookups += 1
            if found["blockhash"] != block_hash:
                self.acked.violations.append(f"index: {txid} in {found['blockhash']}, "
                                             f"chain says {block_hash}")
