@0xd1a6b5e2c3f40a09;

interface Init @0xd1a6b5e2c3f40a0a {
    ping @0 () -> ();
}
