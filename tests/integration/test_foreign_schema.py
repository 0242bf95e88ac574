"""A program that is none of our roles, serving an Init from its user's own Cap'n Proto
schema (``schema = { path, file, init }``): the config check accepts the directory, the
supervisor bootstraps the Init with libmultiprocess's handshake and health-checks it by
``construct``; a reload naming a broken file is refused and the daemon lives on."""

from __future__ import annotations

import sys
from pathlib import Path

from ._peers import write_program
from .conftest import launch, stop_system

# The user's schema: an Init shaped like libmultiprocess's example InitInterface
# (construct, then a factory), written here with ids of its own.
INIT_CAPNP = """\
@0xe3c8a9d1f0b24c61;

using Proxy = import "/mp/proxy.capnp";

interface CalcInit @0xe3c8a9d1f0b24c62 {
    construct @0 (threadMap :Proxy.ThreadMap) -> (threadMap :Proxy.ThreadMap);
    makeCalculator @1 (context :Proxy.Context) -> (result :Calculator);
}

interface Calculator @0xe3c8a9d1f0b24c63 {
    add @0 (context :Proxy.Context, a :Int32, b :Int32) -> (result :Int32);
}
"""

# Spawn mode: serves CalcInit on the inherited socket argv[1]; one stderr line per call.
# It loads the user's file the way any pycapnp program would (capnp.load, one parser for
# both files, so the ThreadMap it returns is the very type construct names).
PEER = f"""#!{sys.executable}
import asyncio, socket, sys
from pathlib import Path
import capnp
from bitcoin_supervisor.ipc.capnp import SCHEMA_DIR

imports = [str(SCHEMA_DIR), str(Path(capnp.__file__).resolve().parent.parent)]
proxy = capnp.load(str(SCHEMA_DIR / "mp" / "proxy.capnp"), imports=imports)
CalcInit = capnp.load(str(Path(sys.argv[2]) / "init.capnp"), imports=imports).CalcInit

class Thread(proxy.Thread.Server):
    async def getName(self, **kwargs):
        return "calc"

class ThreadMap(proxy.ThreadMap.Server):
    async def makeThread(self, name, **kwargs):
        return Thread()

class Init(CalcInit.Server):
    async def construct(self, threadMap, **kwargs):
        print("construct", file=sys.stderr, flush=True)
        return ThreadMap()

async def main():
    sock = socket.socket(fileno=int(sys.argv[1]))
    stream = await capnp.AsyncIoStream.create_connection(sock=sock)
    server = capnp.TwoPartyServer(stream, bootstrap=Init())
    try:
        await server.on_disconnect()
    except capnp.KjException:
        pass

asyncio.run(capnp.run(main()))
"""


def test_a_users_own_init_is_bootstrapped_and_checked_by_construct(tmp_path: Path) -> None:
    schema = tmp_path / "calc-schema"
    schema.mkdir()
    (schema / "init.capnp").write_text(INIT_CAPNP)
    program = write_program(tmp_path, "calc-peer", PEER)
    config = tmp_path / "calc.toml"
    config.write_text(f"""
[supervisor]
datadir = "{tmp_path / 'data'}"
[components.calc]
argv = ["{program}", "{{fd}}", "{schema}"]
schema = {{ path = "calc-schema", file = "init.capnp", init = "CalcInit" }}
sandbox = "none"
health = {{ check = "construct", interval_s = 0.2, timeout_s = 5 }}
stop_timeout_s = 5
""")
    system = launch(config)
    try:
        system.wait_running("calc")
        pid = system.component("calc")["pid"]
        # The handshake's construct, then the checks' own: three in all at least.
        system.log.wait_for(lambda e: e.get("event") == "component.health_passed"
                            and e.get("pid") == pid)
        constructs = [e for e in system.log.events if e.get("event") == "child.log"
                      and e.get("line") == "construct"]
        assert len(constructs) >= 2, constructs
        health = system.component("calc")["health"]
        assert health["check"] == "construct" and health["passed"] >= 1, health
        assert system.component("calc")["restarts"] == 0
        # A reload after the file broke (it now reuses proxy.capnp's id, which it imports:
        # pycapnp would abort the process loading it) is refused by the check's process;
        # the daemon and its component live on.
        (schema / "init.capnp").write_text(INIT_CAPNP.replace("@0xe3c8a9d1f0b24c61;",
                                                              "@0xcc316e3f71a040fb;"))
        refused = system.cli("reload", check=False)
        assert refused.returncode == 2, refused.stderr
        assert "failed: Duplicate ID @0xcc316e3f71a040fb." in refused.stderr, refused.stderr
        assert "previous config keeps running" in refused.stderr
        assert system.process.poll() is None
        assert system.component("calc")["pid"] == pid
    finally:
        stop_system(system)
