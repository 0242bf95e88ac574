"""The wallet's bitcoind-compatible JSON-RPC methods, served through the node's endpoint."""

from __future__ import annotations

from typing import Any

from bitcoin_supervisor.interfaces import RpcRequest

from .._diskfull import RPC_DATABASE_ERROR, disk_full_message
from .._jsonrpc import (
    RPC_DEPRECATED,
    RPC_INVALID_ADDRESS_OR_KEY,
    RPC_INVALID_PARAMETER,
    RPC_WALLET_ERROR,
    RPC_WALLET_NOT_FOUND,
    RPC_WALLET_NOT_SPECIFIED,
    MethodTable,
    RpcError,
    bind,
    btc,
    expect,
)
from ._keys import regtest_script
from ._wallet import WalletError, WalletImpl, WalletLoaderImpl

WALLET_VERSION = 169900  # bitcoind's FEATURE_LATEST
NOMINAL_KEYPOOL = 1000  # addresses are derived on demand; bitcoind's default pool size
_ADDRESS_TYPES = ("legacy", "p2sh-segwit", "bech32", "bech32m")


class WalletRpc:
    """Implements the wallet RPCs over one ``WalletLoaderImpl``; see ``handler()``."""

    def __init__(self, loader: WalletLoaderImpl) -> None:
        self._loader = loader

    def handler(self, *, component: str = "wallet") -> MethodTable:
        """Return the RpcHandler serving every wallet method (names in ``.names``)."""
        return MethodTable({
            "createwallet": self.createwallet,
            "loadwallet": self.loadwallet,
            "unloadwallet": self.unloadwallet,
            "listwallets": self.listwallets,
            "getnewaddress": self.getnewaddress,
            "getbalance": self.getbalance,
            "getbalances": self.getbalances,
            "getwalletinfo": self.getwalletinfo,
            "listunspent": self.listunspent,
            "getaddressinfo": self.getaddressinfo,
            "listreceivedbyaddress": self.listreceivedbyaddress,
        }, component=component)

    async def createwallet(self, request: RpcRequest) -> Any:
        """``createwallet name ...``: -4 if it exists or asks for an unsupported kind."""
        name, no_keys, blank, passphrase, _reuse, descriptors, _startup, signer = bind(
            request, ("wallet_name", "disable_private_keys", "blank", "passphrase",
                      "avoid_reuse", "descriptors", "load_on_startup", "external_signer"))
        name = expect(name, str)
        if name is None:
            raise RpcError(RPC_INVALID_PARAMETER, "wallet_name is required")
        unsupported = (expect(no_keys, bool, False) or expect(blank, bool, False)
                       or expect(passphrase, str, "") or expect(signer, bool, False)
                       or not expect(descriptors, bool, True))
        if unsupported:
            raise RpcError(RPC_WALLET_ERROR, "This wallet only creates descriptor wallets "
                                             "with unencrypted private keys")
        await self._call(self._loader.create_wallet(name))
        return {"name": name, "warning": ""}

    async def loadwallet(self, request: RpcRequest) -> Any:
        """``loadwallet filename``: -35 if loaded already, -18 if absent."""
        name, _startup = bind(request, ("filename", "load_on_startup"))
        name = expect(name, str)
        if name is None:
            raise RpcError(RPC_INVALID_PARAMETER, "filename is required")
        await self._call(self._loader.load_wallet(name))
        return {"name": name, "warning": ""}

    async def unloadwallet(self, request: RpcRequest) -> Any:
        """``unloadwallet [wallet_name]`` (or the /wallet/<name> endpoint)."""
        name, _startup = bind(request, ("wallet_name", "load_on_startup"))
        name = expect(name, str)
        if name is not None and request.wallet is not None and name != request.wallet:
            raise RpcError(RPC_INVALID_PARAMETER, "RPC endpoint wallet and wallet_name "
                                                  "parameter specify different wallets")
        wallet = await self._route(request if name is None else
                                   RpcRequest(request.method, "[]", wallet=name))
        await self._call(self._loader.unload_wallet(await wallet.get_name()))
        return {"warning": ""}

    async def listwallets(self, request: RpcRequest) -> Any:
        """``listwallets``: loaded wallet names, sorted."""
        bind(request, ())
        return await self._loader.list_wallets()

    async def getnewaddress(self, request: RpcRequest) -> Any:
        """``getnewaddress [label] [address_type]``: bech32 only (others -5)."""
        label, address_type = bind(request, ("label", "address_type"))
        label = expect(label, str, "")
        address_type = expect(address_type, str, "bech32")
        if address_type not in _ADDRESS_TYPES:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, f"Unknown address type '{address_type}'")
        if address_type != "bech32":
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY,
                           f"This wallet only hands out bech32 addresses, not {address_type}")
        wallet = await self._route(request)
        return await wallet.get_new_address(label)

    async def getbalance(self, request: RpcRequest) -> Any:
        """``getbalance ["*"] [minconf]``: trusted, mature amount in BTC."""
        dummy, minconf, _watch, _reuse = bind(
            request, ("dummy", "minconf", "include_watchonly", "avoid_reuse"))
        if dummy is not None and dummy != "*":
            raise RpcError(RPC_DEPRECATED,
                           'dummy first argument must be excluded or set to "*".')
        wallet = await self._synced(request)
        return btc(wallet.balances(expect(minconf, int, 0)).trusted)

    async def getbalances(self, request: RpcRequest) -> Any:
        """``getbalances``: trusted / untrusted_pending / immature, plus last block."""
        bind(request, ())
        wallet = await self._synced(request)
        balances = wallet.balances()
        return {"mine": {"trusted": btc(balances.trusted), "untrusted_pending": btc(0),
                         "immature": btc(balances.immature)},
                "lastprocessedblock": await _last_block_json(wallet)}

    async def getwalletinfo(self, request: RpcRequest) -> Any:
        """``getwalletinfo``: bitcoind's fields for a descriptor sqlite wallet."""
        bind(request, ())
        wallet = await self._synced(request)
        balances = wallet.balances()
        return {
            "walletname": await wallet.get_name(),
            "walletversion": WALLET_VERSION,
            "format": "sqlite",
            "balance": btc(balances.trusted),
            "unconfirmed_balance": btc(0),
            "immature_balance": btc(balances.immature),
            "txcount": wallet.store.tx_count(),
            "keypoolsize": NOMINAL_KEYPOOL,
            "keypoolsize_hd_internal": 0,
            "paytxfee": btc(0),
            "private_keys_enabled": True,
            "avoid_reuse": False,
            "scanning": False,
            "descriptors": True,
            "external_signer": False,
            "blank": False,
            "lastprocessedblock": await _last_block_json(wallet),
        }

    async def listunspent(self, request: RpcRequest) -> Any:
        """``listunspent [minconf=1] [maxconf=9999999] [addresses]``; immature coinbase
        outputs are not listed."""
        minconf, maxconf, addresses, _unsafe, _options = bind(
            request, ("minconf", "maxconf", "addresses", "include_unsafe", "query_options"))
        low = expect(minconf, int, 1)
        high = expect(maxconf, int, 9999999)
        wanted = _address_filter(expect(addresses, list, []))
        wallet = await self._synced(request)
        result = []
        for out, depth in wallet.spendable():
            if not low <= depth <= high or (wanted and out.address not in wanted):
                continue
            result.append({
                "txid": out.txid, "vout": out.vout, "address": out.address,
                "label": out.label, "scriptPubKey": out.script.hex(), "amount": btc(out.value),
                "confirmations": depth, "spendable": True, "solvable": True,
                "desc": out.descriptor, "parent_descs": [wallet.receive_descriptor],
                "safe": True,
            })
        return result

    async def getaddressinfo(self, request: RpcRequest) -> Any:
        """``getaddressinfo address``: bitcoind's ownership fields; -5 if invalid."""
        (address,) = bind(request, ("address",))
        address = expect(address, str)
        script = None if address is None else regtest_script(address)
        if address is None or script is None:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Invalid address")
        wallet = await self._route(request)
        info = wallet.store.address_info(address)
        result: dict[str, Any] = {
            "address": address, "scriptPubKey": script.hex(), "ismine": info is not None,
            "solvable": info is not None, "iswatchonly": False, "isscript": False,
            "iswitness": script[:1] in (b"\x00", b"\x51"), "ischange": False,
            "labels": [] if info is None else [info[0]],
        }
        if info is not None:
            result["pubkey"] = info[1].hex()
            result["desc"] = info[2]
        return result

    async def listreceivedbyaddress(self, request: RpcRequest) -> Any:
        """``listreceivedbyaddress [minconf=1] [include_empty=false] [include_watchonly]
        [address_filter]``: what each of our addresses received (spent or not)."""
        minconf, include_empty, _watch, only = bind(
            request, ("minconf", "include_empty", "include_watchonly", "address_filter"))
        low = expect(minconf, int, 1)
        empty = expect(include_empty, bool, False)
        only = expect(only, str)
        wallet = await self._synced(request)
        last = await wallet.get_last_block()
        tip = -1 if last is None else last.height
        result = []
        for address, label, paid in wallet.store.received():
            if only is not None and address != only:
                continue
            counted = [(txid, value, tip - height + 1) for txid, value, height in paid
                       if tip - height + 1 >= low]
            if not counted and not empty:
                continue
            result.append({
                "address": address, "amount": btc(sum(v for _, v, _ in counted)),
                "confirmations": min((d for _, _, d in counted), default=0),
                "label": label, "txids": sorted({t for t, _, _ in counted})})
        return result

    async def _synced(self, request: RpcRequest) -> WalletImpl:
        """``_route``, then wait for the wallet's catch-up to the chain (bitcoind's
        BlockUntilSyncedToCurrentChain): balances are never read mid-catch-up."""
        wallet = await self._route(request)
        await wallet.follower.caught_up()
        if wallet.follower.disk_full:
            # Not a stale balance: the blocks it could not write are missing from it.
            last = await wallet.get_last_block()
            raise RpcError(RPC_DATABASE_ERROR, disk_full_message(
                "the wallet", "record the latest blocks; it knows blocks up to "
                f"{'none' if last is None else last.height} only"))
        return wallet

    async def _route(self, request: RpcRequest) -> WalletImpl:
        """Pick the wallet like bitcoind's GetWalletForJSONRPCRequest."""
        if request.wallet is not None:
            wallet = await self._loader.get_wallet(request.wallet)
            if wallet is None:
                raise RpcError(RPC_WALLET_NOT_FOUND,
                               "Requested wallet does not exist or is not loaded")
            return wallet
        names = await self._loader.list_wallets()
        if len(names) == 1:
            only = await self._loader.get_wallet(names[0])
            if only is not None:
                return only
        if not names:
            raise RpcError(RPC_WALLET_NOT_FOUND,
                           "No wallet is loaded. Load a wallet using loadwallet or create a "
                           "new one with createwallet. (Note: A default wallet is no longer "
                           "automatically created)")
        raise RpcError(RPC_WALLET_NOT_SPECIFIED,
                       "Wallet file not specified (must request wallet RPC through "
                       "/wallet/<filename> uri-path).")

    @staticmethod
    async def _call(operation: Any) -> Any:
        try:
            return await operation
        except WalletError as exc:
            raise RpcError(exc.code, exc.message) from exc


def _address_filter(addresses: list[Any]) -> set[str]:
    wanted: set[str] = set()
    for address in addresses:
        if not isinstance(address, str) or regtest_script(address) is None:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, f"Invalid Bitcoin address: {address}")
        if address in wanted:
            raise RpcError(RPC_INVALID_PARAMETER,
                           f"Invalid parameter, duplicated address: {address}")
        wanted.add(address)
    return wanted


async def _last_block_json(wallet: WalletImpl) -> dict[str, Any] | None:
    last = await wallet.get_last_block()
    return None if last is None else {"hash": last.hash, "height": last.height}
