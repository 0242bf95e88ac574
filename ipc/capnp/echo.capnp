# Echo: proves a link works end to end (mirrors Bitcoin Core's src/ipc/capnp/echo.capnp:
# destroy @0, echo @1). Our own file id, so interface ids differ from Bitcoin Core's.
@0xcfb96cae880840bb;

using Proxy = import "/mp/proxy.capnp";

interface Echo {
    destroy @0 (context :Proxy.Context) -> ();
    # Kept for shape parity with Bitcoin Core; a Python server treats it as a no-op.
    echo @1 (context :Proxy.Context, echo :Text) -> (result :Text);
}
