# Index, served by the index process.
# Optional values use `hasResult :Bool` (see chain.capnp).
@0xe6c9e4663b372f82;

using Proxy = import "/mp/proxy.capnp";

struct IndexInfo {
    name @0 :Text;
    synced @1 :Bool;
    bestBlockHeight @2 :Int32;
}

struct IndexedTransaction {
    txid @0 :Text;
    raw @1 :Data;
    blockHash @2 :Text;
    blockHeight @3 :Int32;
}

interface Index {
    getInfo @0 (context :Proxy.Context) -> (result :IndexInfo);
    getTransaction @1 (context :Proxy.Context, txid :Text)
        -> (result :IndexedTransaction, hasResult :Bool);
}
