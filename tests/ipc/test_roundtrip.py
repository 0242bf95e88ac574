"""Calls over a real socketpair come back with the values the remote implementation produced."""

from __future__ import annotations

from _ipc_roles import (
    GENESIS,
    IndexImpl,
    IndexInit,
    Listener,
    NodeInit,
    RpcImpl,
    WalletInit,
    run,
    served,
)

from bitcoin_supervisor.interfaces import (
    Block,
    BlockRef,
    ChainGrant,
    Echo,
    Init,
    IpcError,
    RpcRequest,
)
from bitcoin_supervisor.ipc.capnp._protocol import LINK_MAX_MESSAGE_BYTES


def test_echo_returns_the_message_unchanged() -> None:
    async def main() -> list[str]:
        async with served(NodeInit()) as (conn, _):
            echo = await conn.init.make_echo()
            return [await echo.echo(m) for m in ("hello", "", "ünïcødé ✓", "x" * 100_000)]

    assert run(main) == ["hello", "", "ünïcødé ✓", "x" * 100_000]


def test_make_chain_returns_a_working_chain() -> None:
    node = NodeInit()

    async def main() -> tuple[BlockRef, str | None, str | None, Block | None, Block | None]:
        async with served(node, name="node") as (conn, _):
            chain = await conn.init.make_chain(ChainGrant("test"))
            return (await chain.get_tip(), await chain.get_block_hash(0),
                    await chain.get_block_hash(5), await chain.get_block(0),
                    await chain.get_block(1))

    tip, hash0, hash5, block0, block1 = run(main)
    assert tip == BlockRef(0, GENESIS.hash)
    assert hash0 == GENESIS.hash
    assert hash5 is None
    assert block0 == GENESIS and isinstance(block0.raw, bytes)
    assert block1 is None


def test_notifications_registered_through_chain_are_called_back() -> None:
    node = NodeInit()
    listener = Listener()

    async def main() -> None:
        async with served(node, name="node") as (conn, _):
            chain = await conn.init.make_chain(ChainGrant("test"))
            handler = await chain.handle_notifications(listener)
            block = await node.chain.connect_block(b"\x01" * 80)
            assert listener.connected == [block]
            await handler.disconnect()
            await handler.disconnect()  # idempotent, as the interface promises
            await node.chain.connect_block(b"\x02" * 80)
            assert listener.connected == [block]
            assert node.chain.listeners == []

    run(main)


def test_rpc_handler_registered_through_chain_serves_results_and_errors() -> None:
    node = NodeInit()
    rpc = RpcImpl()

    async def main() -> None:
        async with served(node, name="node") as (conn, _):
            chain = await conn.init.make_chain(ChainGrant("test"))
            handler = await chain.handle_rpc(["getbalance", "loadwallet"], rpc)
            ok = await node.chain.dispatch(RpcRequest("getbalance", "[]", wallet="w1"))
            assert (ok.is_error, ok.result_json) == (False, "1.5")
            failed = await node.chain.dispatch(RpcRequest("loadwallet", '["nope"]'))
            assert failed.is_error and failed.error_code == -18
            assert "does not exist" in failed.error_message
            assert rpc.seen == [RpcRequest("getbalance", "[]", "w1"),
                                RpcRequest("loadwallet", '["nope"]', None)]
            await handler.disconnect()
            gone = await node.chain.dispatch(RpcRequest("getbalance"))
            assert gone.error_code == -32601

    run(main)


def test_wallet_and_index_values_cross_the_link() -> None:
    node = NodeInit()

    async def main() -> None:
        async with served(node, name="node") as (node_conn, _), \
                served(WalletInit(), name="wallet") as (wallet_conn, _), \
                served(IndexInit(), name="index") as (index_conn, _):
            chain = await node_conn.init.make_chain(ChainGrant("test"))
            loader = await wallet_conn.init.make_wallet_loader(chain)
            wallet = await loader.create_wallet("alice")
            assert await wallet.get_name() == "alice"
            assert (await wallet.get_new_address("l")).startswith("bcrt1q")
            assert await wallet.get_balance() == 21 * 10**14
            assert await wallet.get_last_block() == BlockRef(0, GENESIS.hash)
            assert await loader.list_wallets() == ["alice"]
            assert await loader.get_wallet("bob") is None
            again = await loader.get_wallet("alice")
            assert again is not None and await again.get_name() == "alice"

            index = await index_conn.init.make_index(chain)
            await node.chain.connect_block(b"\x03" * 80)
            info = await index.get_info()
            assert (info.name, info.synced, info.best_block_height) == ("txindex", True, 1)
            assert await index.get_transaction(IndexImpl.TX.txid) == IndexImpl.TX
            assert await index.get_transaction("00" * 32) is None

    run(main)


def test_proxies_take_arguments_the_way_the_interfaces_declare_them() -> None:
    # Generated proxies keep the ABC's defaults and keyword names.
    async def main() -> list[str]:
        async with served(NodeInit(), name="node") as (node_conn, _), \
                served(WalletInit(), name="wallet") as (wallet_conn, _):
            loader = await wallet_conn.init.make_wallet_loader(
                chain=await node_conn.init.make_chain(ChainGrant("test")))
            wallet = await loader.create_wallet(name="w")
            return [await wallet.get_new_address(), await wallet.get_new_address(label="x")]

    first, second = run(main)
    assert first.startswith("bcrt1q") and second.startswith("bcrt1q") and first != second



class _Bloated(Echo):
    """A peer that answers every echo with more than the supervisor reads."""

    async def echo(self, message: str) -> str:
        return message * (LINK_MAX_MESSAGE_BYTES + (1 << 20))


class _BloatedInit(Init):
    async def make_echo(self) -> Echo:
        return _Bloated()


def test_a_message_over_the_link_limit_breaks_that_link_only() -> None:
    async def main() -> str:
        async with served(_BloatedInit()) as (conn, _):
            echo = await conn.init.make_echo()
            try:
                await echo.echo("x")
            except IpcError as exc:
                error = type(exc).__name__
            else:
                raise AssertionError("an answer over the link's limit was read")
            await conn.wait_disconnected()  # that link is gone, and only that one
            return error

    assert run(main) in ("PeerGoneError", "RemoteError")
