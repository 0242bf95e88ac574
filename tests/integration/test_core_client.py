"""Our node as a peer of Bitcoin Core's tools: with ``ipcbind = "unix"`` the node, running
confined under the supervisor, serves its Init on ``<datadir>/node.sock``, and a client
written only against Bitcoin Core v30's wire ids (its own schema below, nothing of ours
but libmultiprocess's ``mp/proxy.capnp``) does libmultiprocess's handshake and calls
Echo and Mining there."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import bitcoin_supervisor.ipc

from ._peers import write_program
from .conftest import System, free_port, launch, own_config, stop_system

PAYEE = "bcrt1q4w46h2at4w46h2at4w46h2at4w46h2atzmxqe2"
PROXY_DIR = Path(bitcoin_supervisor.ipc.__file__).resolve().parent / "capnp"

# Bitcoin Core v30 on the wire, written from its ids and ordinals: Init
# 0x8838c700ba5cba65 (init.capnp's Init), Echo 0xd36b89640dc94399, Mining
# 0xf9c68436df3af39e (mining.capnp's Mining), BlockRef's layout (common.capnp). The file
# id is this test's own.
CORE_V30 = """@0xe0c1b2a3d4f50617;
using Proxy = import "/mp/proxy.capnp";
interface Init @0x8838c700ba5cba65 {
    construct @0 (threadMap :Proxy.ThreadMap) -> (threadMap :Proxy.ThreadMap);
    makeEcho @1 (context :Proxy.Context) -> (result :Echo);
    makeMining @2 (context :Proxy.Context) -> (result :Mining);
}
interface Echo @0xd36b89640dc94399 {
    destroy @0 (context :Proxy.Context) -> ();
    echo @1 (context :Proxy.Context, echo :Text) -> (result :Text);
}
interface Mining @0xf9c68436df3af39e {
    isTestChain @0 (context :Proxy.Context) -> (result :Bool);
    isInitialBlockDownload @1 (context :Proxy.Context) -> (result :Bool);
    getTip @2 (context :Proxy.Context) -> (result :BlockRef, hasResult :Bool);
    waitTipChanged @3 (context :Proxy.Context, currentTip :Data, timeout :Float64)
        -> (result :BlockRef);
}
struct BlockRef {
    hash @0 :Data;
    height @1 :Int32;
}
"""

# argv: schema, proxy dir, socket, "full" | "echo". Prints one line per step; every
# call names the thread made in the handshake (libmultiprocess's Context.thread).
CLIENT = f"""#!{sys.executable}
import asyncio, socket, sys, time
from pathlib import Path
import capnp

schema, proxy_dir, path, mode = sys.argv[1:5]
S = capnp.load(schema, imports=[proxy_dir, str(Path(capnp.__file__).parent.parent)])

def say(*words):
    print(*words, flush=True)

def hexhash(data):
    return bytes(data)[::-1].hex()  # uint256 bytes -> the hex RPC shows

async def main():
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    stream = await capnp.AsyncIoStream.create_connection(sock=sock)
    init = capnp.TwoPartyClient(stream).bootstrap().cast_as(S.Init)
    construct = init.construct_request().send()
    make_thread = construct.threadMap.makeThread_request()
    make_thread.name = "core-client"
    thread = make_thread.send().result
    await construct

    def call(cap, method, **fields):
        request = getattr(cap, method + "_request")()
        request.context.thread = thread
        for name, value in fields.items():
            setattr(request, name, value)
        return request.send()

    echo = (await call(init, "makeEcho")).result
    say("echo", (await call(echo, "echo", echo="hello core")).result)
    if mode == "full":
        mining = (await call(init, "makeMining")).result
        say("testchain", (await call(mining, "isTestChain")).result)
        tip = await call(mining, "getTip")
        say("tip", tip.hasResult, tip.result.height, hexhash(tip.result.hash))
        current = bytes(tip.result.hash)
        started = time.monotonic()
        same = await call(mining, "waitTipChanged", currentTip=current, timeout=300.0)
        say("timeout", same.result.height, round((time.monotonic() - started) * 1000))
        pending = call(mining, "waitTipChanged", currentTip=current, timeout=120000.0)
        # Sent after the wait on the same link: answered while the wait is pending.
        say("echo", (await call(echo, "echo", echo="while waiting")).result)
        say("waiting")
        changed = await pending
        say("changed", changed.result.height, hexhash(changed.result.hash))
    stream.close()

asyncio.run(capnp.run(asyncio.wait_for(main(), 150)))
"""


class _Client:
    """One run of CLIENT; ``line`` reads its next step (empty when it ended)."""

    def __init__(self, tmp_path: Path, sock: Path, mode: str) -> None:
        schema = tmp_path / "core_v30.capnp"
        schema.write_text(CORE_V30)
        program = write_program(tmp_path, "core-client", CLIENT)
        self.proc = subprocess.Popen([str(program), str(schema), str(PROXY_DIR), str(sock),
                                      mode], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def line(self) -> list[str]:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().split()

    def finish(self) -> None:
        _, err = self.proc.communicate(timeout=160)
        assert self.proc.returncode == 0, err


def _node_system(tmp_path: Path) -> System:
    config = own_config(tmp_path, f"""
[components.node]
rpcport = {free_port()}
ipcbind = "unix"
""")
    system = launch(config)
    try:
        system.wait_ready()
    except BaseException:
        stop_system(system)
        raise
    return system


def test_a_core_v30_client_calls_echo_and_mining_on_our_confined_node(tmp_path: Path) -> None:
    system = _node_system(tmp_path)
    try:
        node = system.component("node")
        assert node["confinement"] == "enforced", node
        sock = tmp_path / "data" / "node" / "node.sock"
        mode = os.lstat(sock).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, oct(mode)

        client = _Client(tmp_path, sock, "full")
        assert client.line() == ["echo", "hello", "core"]
        assert client.line() == ["testchain", "True"]
        genesis = system.rpc("getbestblockhash")
        assert client.line() == ["tip", "True", "0", genesis]
        word, height, waited_ms = client.line()
        assert (word, height) == ("timeout", "0") and int(waited_ms) >= 250, waited_ms
        assert client.line() == ["echo", "while", "waiting"]
        assert client.line() == ["waiting"]
        mined = json.loads(system.rpc("generatetoaddress", "1", PAYEE))
        assert client.line() == ["changed", "1", mined[0]]
        client.finish()
    finally:
        stop_system(system)


def test_node_sock_is_served_again_after_the_node_is_killed(tmp_path: Path) -> None:
    """kill -9 leaves the socket file behind: the restarted node replaces it (binding
    over it would fail) and serves Core's ids there again."""
    system = _node_system(tmp_path)
    try:
        sock = tmp_path / "data" / "node" / "node.sock"
        old = system.component("node")
        system.log.mark()
        os.kill(old["pid"], signal.SIGKILL)
        system.wait_running("node", not_pid=old["pid"])
        client = _Client(tmp_path, sock, "echo")
        assert client.line() == ["echo", "hello", "core"]
        client.finish()
    finally:
        stop_system(system)
