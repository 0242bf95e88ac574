# WalletLoader and Wallet, served by the wallet process.
# Optional values use `hasResult :Bool` (see chain.capnp).
@0x9e8253a142549b94;

using Proxy = import "/mp/proxy.capnp";
using Chain = import "chain.capnp";

interface WalletLoader {
    createWallet @0 (context :Proxy.Context, name :Text) -> (result :Wallet);
    getWallet @1 (context :Proxy.Context, name :Text) -> (result :Wallet, hasResult :Bool);
    listWallets @2 (context :Proxy.Context) -> (result :List(Text));
}

interface Wallet {
    getName @0 (context :Proxy.Context) -> (result :Text);
    getNewAddress @1 (context :Proxy.Context, label :Text) -> (result :Text);
    getBalance @2 (context :Proxy.Context) -> (result :Int64);     # satoshis
    getLastBlock @3 (context :Proxy.Context) -> (result :Chain.BlockRef, hasResult :Bool);
}
