# Bitcoin Core v30's Init and Mining as they travel on the wire: interface ids, method
# ordinals and field layouts written down from what a real bitcoin-node answers and
# from the ids capnp derives for Core's declarations (not Bitcoin Core's own schema
# files, which this project neither ships nor needs). The names are ours (the wire
# carries only ids); the file id is ours too, so loading Bitcoin Core's init.capnp
# (file 0xf2c5cfa319406aa6) beside this one cannot collide. Core's Echo is our Echo
# (echo.capnp carries its id).
#
# Our own Init (init.capnp) extends CoreInit, so a Core-side client finds construct,
# makeEcho and makeMining under Core's ids on our node as well.
@0xa73f1f51ba18bfe0;

using Proxy = import "/mp/proxy.capnp";
using Echo = import "echo.capnp";

interface CoreInit @0x8838c700ba5cba65 {
    construct @0 (threadMap :Proxy.ThreadMap) -> (threadMap :Proxy.ThreadMap);
    makeEcho @1 (context :Proxy.Context) -> (result :Echo.Echo);
    makeMining @2 (context :Proxy.Context) -> (result :Mining);
}

# Core's interfaces::Mining. Described up to waitTipChanged @3; createNewBlock @4 and
# checkBlock @5 (block templates) are not, so calling them on our node is
# "unimplemented".
interface Mining @0xf9c68436df3af39e {
    isTestChain @0 (context :Proxy.Context) -> (result :Bool);
    isInitialBlockDownload @1 (context :Proxy.Context) -> (result :Bool);
    getTip @2 (context :Proxy.Context) -> (result :CoreBlockRef, hasResult :Bool);
    # Waits until the tip differs from currentTip or timeout (milliseconds) passed,
    # then returns the tip.
    waitTipChanged @3 (context :Proxy.Context, currentTip :Data, timeout :Float64)
        -> (result :CoreBlockRef);
}

# Core's interfaces::BlockRef (a struct's id is not on the wire, only its layout).
struct CoreBlockRef {
    hash @0 :Data;       # uint256 as serialized: internal byte order (display reversed)
    height @1 :Int32;
}

# libmultiprocess's example programs (mpcalculator, mpprinter): InitInterface of its
# example/init.capnp (file 0xba5a7448664901b1), of which the supervisor needs only the
# handshake; their health check is "construct".
interface MpExampleInit @0xf005d0634bafecf9 {
    construct @0 (threadMap :Proxy.ThreadMap) -> (threadMap :Proxy.ThreadMap);
}
