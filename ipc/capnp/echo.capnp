# Echo: proves a link works end to end. It is Bitcoin Core's Echo on the wire: the
# interface id (0xd36b89640dc94399) and the ordinals (destroy @0, echo @1) are Core
# v30's, so a client written against Core's schemas calls ours and ours calls Core's.
# The file id is our own (Core's echo.capnp is a different file; its id is not on the
# wire).
@0xcfb96cae880840bb;

using Proxy = import "/mp/proxy.capnp";

interface Echo @0xd36b89640dc94399 {
    destroy @0 (context :Proxy.Context) -> ();
    # Kept for shape parity with Bitcoin Core; a Python server treats it as a no-op.
    echo @1 (context :Proxy.Context, echo :Text) -> (result :Text);
}
