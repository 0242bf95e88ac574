"""A capability obtained from one peer works when handed on to another (brokering)."""

from __future__ import annotations

import asyncio

import pytest
import structlog
from _ipc_roles import GENESIS, NodeInit, RelayInit, WalletInit, run, served

from bitcoin_supervisor.interfaces import BlockRef, ChainGrant, PeerGoneError


def test_chain_brokered_from_node_to_wallet_works_both_ways() -> None:
    node = NodeInit()
    wallet_role = WalletInit()

    async def main() -> None:
        # Three peers in one loop: node and wallet serve, the "supervisor" connects to both
        # with call logging on, so any Python in the forwarded path would show up as events.
        async with served(node, name="node", client_debug=True) as (node_conn, _), \
                served(wallet_role, name="wallet", client_debug=True) as (wallet_conn, _):
            chain = await node_conn.init.make_chain(ChainGrant("test"))
            loader = await wallet_conn.init.make_wallet_loader(chain)
            wallet = await loader.create_wallet("w")
            assert wallet_role.loader is not None
            with structlog.testing.capture_logs() as logs:
                # wallet -> node: the wallet's Chain proxy calls through the supervisor.
                tip = await wallet_role.loader.chain.get_tip()
                # node -> wallet: the notifications the wallet registered come back.
                block = await node.chain.connect_block(b"\x05" * 80)
            assert tip == BlockRef(0, GENESIS.hash)
            assert wallet_role.listener.connected == [block]
            assert [e for e in logs if e["event"] == "ipc.call"] == []
            # The supervisor's own calls are logged, so the silence above means something.
            with structlog.testing.capture_logs() as logs:
                assert await wallet.get_last_block() == BlockRef(1, block.hash)
            assert [(e["interface"], e["method"]) for e in logs if e["event"] == "ipc.call"] \
                == [("Wallet", "getLastBlock")]

    run(main)


def test_chain_re_exported_by_a_middle_component_reaches_the_origin() -> None:
    node = NodeInit()

    async def main() -> None:
        async with served(node, name="node") as (node_conn, _):
            relay = RelayInit(await node_conn.init.make_chain(ChainGrant("test")))
            async with served(relay, name="relay") as (relay_conn, _):
                chain = await relay_conn.init.make_chain(ChainGrant("test"))
                await node.chain.connect_block(b"\x06" * 80)
                assert (await chain.get_tip()).height == 1
                block = await chain.get_block(1)
                assert block is not None and block.raw == b"\x06" * 80

    run(main)


def test_forwarded_capability_fails_with_peer_gone_when_its_origin_dies() -> None:
    node = NodeInit()
    wallet_role = WalletInit()

    async def main() -> None:
        async with served(wallet_role, name="wallet") as (wallet_conn, _):
            async with served(node, name="node") as (node_conn, node_serving):
                chain = await node_conn.init.make_chain(ChainGrant("test"))
                await wallet_conn.init.make_wallet_loader(chain)
                node_serving.cancel()
                await node_conn.wait_disconnected()
            assert wallet_role.loader is not None
            with pytest.raises(PeerGoneError):
                await wallet_role.loader.chain.get_tip()
            # The wallet's own link to the supervisor is unaffected.
            loader = await wallet_conn.init.make_wallet_loader(node.chain)
            assert await loader.list_wallets() == []

    run(main)


def test_local_implementation_passed_as_argument_is_served() -> None:
    # The supervisor may also hand over a Chain it implements itself.
    wallet_role = WalletInit()
    node = NodeInit()

    async def main() -> None:
        async with served(wallet_role, name="wallet") as (wallet_conn, _):
            loader = await wallet_conn.init.make_wallet_loader(node.chain)
            wallet = await loader.create_wallet("local")
            await node.chain.connect_block(b"\x07" * 80)
            assert (await wallet.get_last_block()) == BlockRef(1, node.chain.blocks[1].hash)
            await asyncio.sleep(0)
            assert wallet_role.listener.connected == [node.chain.blocks[1]]

    run(main)
