@0xd1a6b5e2c3f40a07;

# "Init" is a struct here, not an interface.
struct Init {
    value @0 :UInt32;
}
interface InitInterface @0xd1a6b5e2c3f40a08 {
    ping @0 () -> ();
}
