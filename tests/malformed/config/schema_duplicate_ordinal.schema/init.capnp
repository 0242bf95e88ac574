@0xd1a6b5e2c3f40a04;

interface Init @0xd1a6b5e2c3f40a05 {
    ping @0 () -> ();
    pong @0 () -> ();
}
