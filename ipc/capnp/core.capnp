# Bitcoin Core v30's Init and Echo as they travel on the wire: interface ids and method
# ordinals written down from what a real bitcoin-node answers (not Bitcoin Core's own
# schema files, which this project neither ships nor needs). The names are ours (the
# wire carries only ids); the file id is ours too, so loading Bitcoin Core's init.capnp
# (file 0xf2c5cfa319406aa6) beside this one cannot collide.
#
# Not described: makeMining @2 (its Mining interface is not used by the supervisor).
@0xa73f1f51ba18bfe0;

using Proxy = import "/mp/proxy.capnp";

interface CoreInit @0x8838c700ba5cba65 {
    construct @0 (threadMap :Proxy.ThreadMap) -> (threadMap :Proxy.ThreadMap);
    makeEcho @1 (context :Proxy.Context) -> (result :CoreEcho);
}

interface CoreEcho @0xd36b89640dc94399 {
    # destroy deletes the C++ object: never call it twice (a C++ server crashes).
    destroy @0 (context :Proxy.Context) -> ();
    echo @1 (context :Proxy.Context, echo :Text) -> (result :Text);
}

# libmultiprocess's example programs (mpcalculator, mpprinter): InitInterface of its
# example/init.capnp (file 0xba5a7448664901b1), of which the supervisor needs only the
# handshake; their health check is "construct".
interface MpExampleInit @0xf005d0634bafecf9 {
    construct @0 (threadMap :Proxy.ThreadMap) -> (threadMap :Proxy.ThreadMap);
}
