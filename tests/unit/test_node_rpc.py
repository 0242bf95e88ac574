"""The node's JSON-RPC server over real HTTP, as bitcoin-cli and bitcoind clients see it."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from embit import ec, script
from embit.networks import NETWORKS

from bitcoin_supervisor.interfaces import ComponentSettings, RpcHandler, RpcRequest, RpcResponse
from bitcoin_supervisor.roles.node import GENESIS_HASH, NodeProcess

ADDRESS = script.p2wpkh(ec.PrivateKey(bytes.fromhex("33" * 32)).get_public_key()).address(
    NETWORKS["regtest"])


class Client:
    """A bitcoind RPC client: cookie auth, one POST per call."""

    def __init__(self, session: aiohttp.ClientSession, port: int, cookie: str) -> None:
        self.session = session
        self.url = f"http://127.0.0.1:{port}"
        self.auth: str | None = _basic(cookie)

    async def post(self, body: Any, path: str = "/", raw: bytes | None = None,
                   auth: str | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else json.dumps(body).encode()
        credentials = auth or self.auth
        headers = {"Authorization": credentials} if credentials else {}
        async with self.session.post(self.url + path, data=data, headers=headers) as reply:
            text = await reply.text()
            return reply.status, (json.loads(text) if text else None)

    async def call(self, method: str, *params: Any, path: str = "/") -> tuple[int, Any]:
        return await self.post({"jsonrpc": "1.0", "id": "t", "method": method,
                                "params": list(params)}, path)

    async def result(self, method: str, *params: Any) -> Any:
        status, reply = await self.call(method, *params)
        assert status == 200 and reply["error"] is None, reply
        return reply["result"]


def _basic(userpass: str) -> str:
    return "Basic " + base64.b64encode(userpass.encode()).decode()


Scenario = Callable[[NodeProcess, Client, Path], Awaitable[None]]


def _run(tmp_path: Path, scenario: Scenario) -> None:
    async def main() -> None:
        node = NodeProcess()
        settings = ComponentSettings("node", "node", str(tmp_path), options={"rpcport": 0})
        await node.start(settings)
        try:
            cookie = (tmp_path / ".cookie").read_text()
            async with aiohttp.ClientSession() as session:
                await scenario(node, Client(session, node.rpc_port, cookie), tmp_path)
        finally:
            await node.stop()
    asyncio.run(main())


def test_cookie_is_private_and_required(tmp_path: Path) -> None:
    async def scenario(node: NodeProcess, rpc: Client, datadir: Path) -> None:
        cookie = datadir / ".cookie"
        assert stat.S_IMODE(cookie.stat().st_mode) == 0o600
        user, _, password = cookie.read_text().partition(":")
        assert user == "__cookie__" and len(password) == 64 and int(password, 16) >= 0
        rpc.auth = None
        status, _ = await rpc.call("getblockcount")
        assert status == 401
        status, _ = await rpc.post({"method": "getblockcount"},
                                   auth=_basic("__cookie__:" + "0" * 64))
        assert status == 401
    _run(tmp_path, scenario)
    assert not (tmp_path / ".cookie").exists()  # removed on a clean stop


def test_chain_queries_answer_like_bitcoind(tmp_path: Path) -> None:
    async def scenario(node: NodeProcess, rpc: Client, datadir: Path) -> None:
        assert await rpc.result("getblockhash", 0) == GENESIS_HASH
        info = await rpc.result("getblockchaininfo")
        assert info["chain"] == "regtest" and info["blocks"] == 0
        assert info["initialblockdownload"] is True  # genesis is from 2011
        hashes = await rpc.result("generatetoaddress", 101, ADDRESS)
        assert len(hashes) == 101 and await rpc.result("getblockcount") == 101
        assert await rpc.result("getbestblockhash") == hashes[-1]
        info = await rpc.result("getblockchaininfo")
        assert (info["blocks"], info["headers"], info["bestblockhash"]) == (101, 101, hashes[-1])
        assert info["chainwork"] == f"{2 * 102:064x}" and info["initialblockdownload"] is False
        assert info["difficulty"] == 4.656542373906925e-10 and info["pruned"] is False
        assert info["size_on_disk"] > 0 and info["warnings"] == []
        block = await rpc.result("getblock", hashes[0])
        assert block["height"] == 1 and block["confirmations"] == 101
        assert block["previousblockhash"] == GENESIS_HASH
        assert block["nextblockhash"] == hashes[1] and block["nTx"] == len(block["tx"]) == 1
        assert block["bits"] == "207fffff" and block["versionHex"] == "20000000"
        assert block["weight"] > block["size"] > block["strippedsize"]
        raw = await rpc.result("getblock", hashes[0], 0)
        chain_block = await node.chain.get_block(1)
        assert chain_block is not None and raw == chain_block.raw.hex()
        named = await rpc.post({"method": "getblock", "id": 1,
                                "params": {"blockhash": hashes[-1], "verbosity": 1}})
        assert named[0] == 200 and "nextblockhash" not in named[1]["result"]
    _run(tmp_path, scenario)


def test_errors_carry_bitcoind_codes_and_http_statuses(tmp_path: Path) -> None:
    async def scenario(node: NodeProcess, rpc: Client, datadir: Path) -> None:
        expectations: list[tuple[tuple[Any, ...], int, int, str]] = [
            (("getblockhash", 1), 500, -8, "Block height out of range"),
            (("getblock", "00" * 32), 500, -5, "Block not found"),
            (("getblock", "zz"), 500, -8, "blockhash must be of length 64"),
            (("generatetoaddress", 1, "bc1qnotregtest"), 500, -5, "Error: Invalid address"),
            (("getblockhash", "0"), 500, -3, "JSON value of type string"),
            (("nosuchmethod",), 404, -32601, "Method not found"),
        ]
        for call, http, code, message in expectations:
            status, reply = await rpc.call(*call)
            assert status == http and reply["result"] is None and reply["id"] == "t", call
            assert reply["error"]["code"] == code and message in reply["error"]["message"]
        status, reply = await rpc.post(None, raw=b"{not json")
        assert status == 500 and reply["error"]["code"] == -32700
        status, reply = await rpc.post({"id": 7, "params": []})
        assert status == 400 and reply["error"]["code"] == -32600 and reply["id"] == 7
        # JSON-RPC 2.0: errors in a 200 reply without "result"; notifications get no body.
        status, reply = await rpc.post({"jsonrpc": "2.0", "id": 2, "method": "nosuchmethod"})
        assert status == 200 and reply == {"jsonrpc": "2.0", "id": 2, "error": {
            "code": -32601, "message": "Method not found"}}
        status, reply = await rpc.post({"jsonrpc": "2.0", "method": "getblockcount"})
        assert (status, reply) == (204, None)
        status, reply = await rpc.post({"jsonrpc": "2.0", "id": 3, "method": "getblockcount"})
        assert (status, reply) == (200, {"jsonrpc": "2.0", "result": 0, "id": 3})
    _run(tmp_path, scenario)


def test_batches_answer_each_call_in_order(tmp_path: Path) -> None:
    async def scenario(node: NodeProcess, rpc: Client, datadir: Path) -> None:
        status, replies = await rpc.post([
            {"id": 1, "method": "getblockcount"},
            {"id": 2, "method": "getblockhash", "params": [5]},
            {"jsonrpc": "2.0", "method": "getblockcount"},  # notification: no reply
            "junk",
        ])
        assert status == 200 and [r["id"] for r in replies[:2]] == [1, 2]
        assert replies[0]["result"] == 0 and replies[1]["error"]["code"] == -8
        assert replies[2]["error"]["code"] == -32600 and len(replies) == 3
    _run(tmp_path, scenario)


class WalletLike(RpcHandler):
    def __init__(self) -> None:
        self.requests: list[RpcRequest] = []

    async def execute(self, request: RpcRequest) -> RpcResponse:
        self.requests.append(request)
        if request.wallet is None:
            return RpcResponse.fail(-19, "Wallet file not specified (must request wallet RPC "
                                         "through /wallet/<filename> uri-path).")
        return RpcResponse.ok({"wallet": request.wallet, "params": json.loads(
            request.params_json)})


def test_registered_methods_are_forwarded_with_the_wallet_from_the_path(
        tmp_path: Path) -> None:
    async def scenario(node: NodeProcess, rpc: Client, datadir: Path) -> None:
        wallet = WalletLike()
        handler = await node.chain.handle_rpc(["getbalance"], wallet)
        status, reply = await rpc.call("getbalance", "*", 1, path="/wallet/my%20wallet")
        assert status == 200 and reply["result"] == {"wallet": "my wallet", "params": ["*", 1]}
        status, reply = await rpc.post({"id": 1, "method": "getbalance",
                                        "params": {"minconf": 1}}, path="/wallet/w")
        assert reply["result"]["params"] == {"minconf": 1}
        status, reply = await rpc.call("getbalance")
        assert status == 500 and reply["error"]["code"] == -19
        assert "getbalance" in await rpc.result("help")
        await handler.disconnect()
        status, reply = await rpc.call("getbalance", path="/wallet/w")
        assert status == 404 and reply["error"]["code"] == -32601
        status, _ = await rpc.call("getblockcount", path="/other")
        assert status == 404
    _run(tmp_path, scenario)


def test_stop_answers_then_requests_shutdown(tmp_path: Path) -> None:
    async def scenario(node: NodeProcess, rpc: Client, datadir: Path) -> None:
        assert not node.stop_requested.is_set()
        assert await rpc.result("stop") == "Bitcoin Core stopping"
        await asyncio.wait_for(node.stop_requested.wait(), 5)
    _run(tmp_path, scenario)
