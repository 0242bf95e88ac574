# A user's file that reuses the id of libmultiprocess's proxy.capnp, which it imports.
@0xcc316e3f71a040fb;

using Proxy = import "/mp/proxy.capnp";

interface Init @0xd1a6b5e2c3f40a01 {
    construct @0 (threadMap :Proxy.ThreadMap) -> (threadMap :Proxy.ThreadMap);
}
