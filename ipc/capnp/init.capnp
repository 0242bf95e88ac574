# Init: the bootstrap capability every component serves on its IPC link.
# It extends Bitcoin Core v30's Init (core.capnp's CoreInit, Core's wire id), so
# construct @0, makeEcho @1 and makeMining @2 are Core's methods under Core's ids and a
# client written against Core's schemas can call them on our node. Our own methods
# live on this extension (their own interface id and ordinals). A role that lacks a
# capability fails the call with a one-line "NotProvidedError: ..." exception.
@0x845f9f1a38016326;

using Proxy = import "/mp/proxy.capnp";
using Core = import "core.capnp";
using Chain = import "chain.capnp";
using Wallet = import "wallet.capnp";
using Index = import "index.capnp";

interface Init extends(Core.CoreInit) {
    makeChain @0 (context :Proxy.Context, grant :Chain.ChainGrant) -> (result :Chain.Chain);
    makeWalletLoader @1 (context :Proxy.Context, chain :Chain.Chain)
        -> (result :Wallet.WalletLoader);
    makeIndex @2 (context :Proxy.Context, chain :Chain.Chain) -> (result :Index.Index);
    # Direct introduction: the supervisor passed one end of a fresh socketpair to the
    # provider and the other to the consumer over their introduction channels (SCM_RIGHTS),
    # each under a channel number; the provider serves the consumer's minted Chain on its
    # end, the consumer bootstraps it from its own end.
    serveChain @3 (context :Proxy.Context, grant :Chain.ChainGrant, channel :UInt32)
        -> (result :Chain.Handler);
    connectChain @4 (context :Proxy.Context, channel :UInt32) -> (result :Chain.Chain);
    consumerHealth @5 (context :Proxy.Context) -> (result :Chain.ChainHealth);
    # Warm standby: a role started as one serves Init with its datadir closed; this
    # opens it (databases), after which makeWalletLoader/makeIndex serve as usual.
    activate @6 (context :Proxy.Context) -> ();
}
