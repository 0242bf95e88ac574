# libmultiprocess's annotation schema, described here from its file id and declaration
# names (capnp derives every id below from those two): Bitcoin Core's schemas and ours
# import it as "/mp/proxy.capnp". It must be a superset of what Bitcoin Core v30's
# schemas use: pycapnp loads a file of this id once per process and aborts on a second
# copy ("Duplicate ID"), so a schema naming an annotation missing here cannot be loaded.
@0xcc316e3f71a040fb;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("mp");

# Code-generation hints for libmultiprocess's C++ generator; they mean nothing on the
# wire and nothing to pycapnp, but a schema that uses one must find it declared.
annotation include(file): Text;                # a C++ header the generated code includes
annotation includeTypes(file): Text;           # a header of C++ type conversions
annotation wrap(interface, struct): Text;      # the C++ class an interface/struct stands for
annotation count(param, struct, interface): Int32;  # C++ arguments behind one field
annotation exception(param): Text;             # a result field carrying a C++ exception
annotation name(field, method): Text;          # the C++ name when it differs
annotation skip(field): Void;                  # a field with no C++ counterpart

interface ThreadMap $count(0) {
    # Lets a client name the server thread that runs each of its calls.
    makeThread @0 (name :Text) -> (result :Thread);
    # Newer libmultiprocess: a pool of threads for calls that name none.
    makePool @1 (count :UInt32) -> ();
}

interface Thread {
    # One server thread, passed back in Context.thread to run a call on it.
    getName @0 () -> (result :Text);
}

struct Context $count(0) {
    # First parameter of most calls: which server thread runs it (thread) and which
    # client thread receives callbacks made meanwhile (callbackThread).
    thread @0 :Thread;
    callbackThread @1 :Thread;
}
