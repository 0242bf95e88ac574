"""Wallet and index behind the reference node's own JSON-RPC endpoint, in one process."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import aiohttp

from bitcoin_supervisor.interfaces import ChainGrant, ComponentSettings
from bitcoin_supervisor.roles.index import IndexProcess
from bitcoin_supervisor.roles.node import NodeProcess
from bitcoin_supervisor.roles.wallet import WalletProcess
from bitcoin_supervisor.supervisor._capabilities import ROLE_RPC_METHODS


class Client:
    """A bitcoin-cli stand-in: cookie auth, /wallet/<name> routing."""

    def __init__(self, session: aiohttp.ClientSession, port: int, cookie: str) -> None:
        self._session = session
        self._url = f"http://127.0.0.1:{port}"
        self._auth = "Basic " + base64.b64encode(cookie.encode()).decode()

    async def call(self, method: str, *params: Any, wallet: str | None = None) -> Any:
        path = "/" if wallet is None else f"/wallet/{wallet}"
        async with self._session.post(
                self._url + path, headers={"Authorization": self._auth},
                json={"jsonrpc": "1.0", "id": 1, "method": method,
                      "params": list(params)}) as reply:
            body = await reply.json()
        if body["error"] is not None:
            raise AssertionError(f"{method}: {body['error']}")
        return body["result"]


def settings(name: str, datadir: Path, **options: Any) -> ComponentSettings:
    return ComponentSettings(name=name, role=name, datadir=str(datadir / name),
                             options=options)


def test_mining_to_a_wallet_through_the_node(tmp_path: Path) -> None:
    async def scenario() -> None:
        node, wallet, index = NodeProcess(), WalletProcess(), IndexProcess()
        node_init = await node.start(settings("node", tmp_path, rpcport=0))
        wallet_init = await wallet.start(settings("wallet", tmp_path))
        index_init = await index.start(settings("index", tmp_path))
        await wallet_init.make_wallet_loader(await node_init.make_chain(
            ChainGrant("wallet", ROLE_RPC_METHODS["wallet"])))
        await index_init.make_index(await node_init.make_chain(
            ChainGrant("index", ROLE_RPC_METHODS["index"])))
        cookie = (tmp_path / "node" / ".cookie").read_text()
        try:
            async with aiohttp.ClientSession() as session:
                cli = Client(session, node.rpc_port, cookie)
                await cli.call("createwallet", "miner")
                address = await cli.call("getnewaddress", wallet="miner")
                hashes = await cli.call("generatetoaddress", 101, address)
                assert await cli.call("getbalance", wallet="miner") == 50
                info = await cli.call("getwalletinfo")
                assert info["lastprocessedblock"] == {"hash": hashes[-1], "height": 101}
                assert info["immature_balance"] == 5000
                (coin,) = await cli.call("listunspent")
                assert coin["address"] == address and coin["confirmations"] == 101

                block = await cli.call("getblock", hashes[0], 1)
                coinbase = block["tx"][0]
                tx = await cli.call("getrawtransaction", coinbase, True)
                assert tx["blockhash"] == hashes[0] and tx["confirmations"] == 101
                assert tx["vout"][0]["scriptPubKey"]["address"] == address
                assert await cli.call("getindexinfo") == {
                    "txindex": {"synced": True, "best_block_height": 101}}
        finally:
            await wallet.stop()
            await index.stop()
            await node.stop()

    asyncio.run(scenario())
