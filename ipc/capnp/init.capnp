# Init: the bootstrap capability every component serves on its IPC link.
# Ordinals @0 construct and @1 makeEcho match Bitcoin Core's Init (libmultiprocess
# convention); the interface id is our own, so talking to a real bitcoin-node needs
# Bitcoin Core's own init.capnp. A role that lacks a capability fails the call with a
# one-line "NotProvidedError: ..." exception.
@0x845f9f1a38016326;

using Proxy = import "/mp/proxy.capnp";
using Echo = import "echo.capnp";
using Chain = import "chain.capnp";
using Wallet = import "wallet.capnp";
using Index = import "index.capnp";

interface Init {
    construct @0 (threadMap :Proxy.ThreadMap) -> (threadMap :Proxy.ThreadMap);
    makeEcho @1 (context :Proxy.Context) -> (result :Echo.Echo);
    makeChain @2 (context :Proxy.Context, grant :Chain.ChainGrant) -> (result :Chain.Chain);
    makeWalletLoader @3 (context :Proxy.Context, chain :Chain.Chain)
        -> (result :Wallet.WalletLoader);
    makeIndex @4 (context :Proxy.Context, chain :Chain.Chain) -> (result :Index.Index);
    # Direct introduction: the supervisor passed one end of a fresh socketpair to the
    # provider and the other to the consumer over their introduction channels (SCM_RIGHTS),
    # each under a channel number; the provider serves the consumer's minted Chain on its
    # end, the consumer bootstraps it from its own end.
    serveChain @5 (context :Proxy.Context, grant :Chain.ChainGrant, channel :UInt32)
        -> (result :Chain.Handler);
    connectChain @6 (context :Proxy.Context, channel :UInt32) -> (result :Chain.Chain);
    consumerHealth @7 (context :Proxy.Context) -> (result :Chain.ChainHealth);
}
