@0xd1a6b5e2c3f40a02;

interface Init @0xd1a6b5e2c3f40a03 {
    construct @0 (threadMap :ThreadMap -> ();
}
