# Chain and the callbacks a chain client registers (ChainNotifications, RpcHandler),
# plus the value structs that travel with them.
#
# Optional values: a result that may be absent comes with `hasResult :Bool`
# (Bitcoin Core's convention for std::optional); when it is false, `result` is
# meaningless. Optional struct fields use the same `has<Field>` pattern.
@0xc6398e68f1b42f70;

using Proxy = import "/mp/proxy.capnp";

struct BlockRef {
    height @0 :Int32;
    hash @1 :Text;       # big-endian hex, as shown by bitcoind RPC
}

struct Block {
    height @0 :Int32;
    hash @1 :Text;
    raw @2 :Data;        # serialized block with witness
}

struct RpcRequest {
    method @0 :Text;
    paramsJson @1 :Text;
    wallet @2 :Text;     # from a /wallet/<name> URL path; only if hasWallet
    hasWallet @3 :Bool;
}

struct RpcResponse {
    resultJson @0 :Text;
    errorCode @1 :Int32;     # 0: success; otherwise a bitcoind RPC error code
    errorMessage @2 :Text;
}

# What one consumer's Chain may do (interfaces.ChainLimits; 0 never means "unlimited").
struct ChainLimits {
    maxRpcNames @0 :UInt32;
    maxNameLength @1 :UInt32;
    maxRegistrations @2 :UInt32;
    maxCallsInFlight @3 :UInt32;
    maxMessageBytes @4 :UInt32;
    notifyQueueDepth @5 :UInt32;
    notifyDeadlineMs @6 :UInt32;
    laggingRestartMs @7 :UInt32;
}

# How one consumer keeps up with the provider's notifications (Init.consumerHealth).
struct ConsumerHealth {
    consumer @0 :Text;
    lagging @1 :Bool;
    laggingMs @2 :UInt32;   # how long it has been lagging; 0 when it is not
}

struct ChainHealth {
    consumers @0 :List(ConsumerHealth);
}

# An RPC name and the consumer whose grant lists it.
struct RpcNameOwner {
    name @0 :Text;
    owner @1 :Text;
}

# The identity and rights a Chain is minted with (Init.makeChain). ownedElsewhere: the
# names the provider's other consumers own, so a refusal names the owner whether or not
# its Chain was minted yet.
struct ChainGrant {
    consumer @0 :Text;
    rpcMethods @1 :List(Text);
    limits @2 :ChainLimits;
    ownedElsewhere @3 :List(RpcNameOwner);
}

interface Handler {
    disconnect @0 (context :Proxy.Context) -> ();
}

interface ChainNotifications {
    blockConnected @0 (context :Proxy.Context, block :Block) -> ();
    blockDisconnected @1 (context :Proxy.Context, block :Block) -> ();
}

interface RpcHandler {
    execute @0 (context :Proxy.Context, request :RpcRequest) -> (result :RpcResponse);
}

interface Chain {
    getTip @0 (context :Proxy.Context) -> (result :BlockRef);
    getBlockHash @1 (context :Proxy.Context, height :Int32) -> (result :Text, hasResult :Bool);
    getBlock @2 (context :Proxy.Context, height :Int32) -> (result :Block, hasResult :Bool);
    handleNotifications @3 (context :Proxy.Context, notifications :ChainNotifications)
        -> (result :Handler);
    handleRpc @4 (context :Proxy.Context, methods :List(Text), handler :RpcHandler)
        -> (result :Handler);
}
