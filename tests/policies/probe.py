"""A sandboxed probe for what the package's probe matrix cannot express: whole-process
facts (status), a role-like workload, walls behind a relaxed filter, signal handling.

Run as ``python probe.py '<json>'``; prints one JSON line on stdout. The per-operation
allowed/forbidden matrix lives in ``bitcoin_supervisor.sandbox`` (``policy test``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import fcntl
import json
import os
import signal
import socket
import sqlite3
import struct
import sys
import threading
from pathlib import Path

from bitcoin_supervisor import log
from bitcoin_supervisor.sandbox import Policy, SandboxContext, apply, load_policy


def _errname(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def _status() -> dict[str, object]:
    fields = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("Seccomp", "NoNewPrivs", "CapEff", "CapPrm", "CapBnd", "Uid", "Pid"):
                fields[key] = value.split()[0] if key != "Uid" else value.split()
    with open("/proc/self/net/dev", encoding="ascii") as fh:
        ifaces = [line.split(":")[0].strip() for line in fh.readlines()[2:]]
    return {"status": fields, "ifaces": ifaces, "hostname": socket.gethostname(),
            "pid": os.getpid(), "fds": sorted(
                int(fd) for fd in os.listdir("/proc/self/fd"))}


def _workload(datadir: Path) -> dict[str, object]:
    db = sqlite3.connect(datadir / "wallet.sqlite")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB)")
    with db:
        db.executemany("INSERT INTO t (v) VALUES (?)", [(os.urandom(64),) for _ in range(200)])
    rows = db.execute("SELECT count(*) FROM t").fetchone()[0]
    db.close()
    with open(datadir / "fsync.bin", "wb") as fh:
        fh.write(b"x" * 4096)
        fh.flush()
        os.fsync(fh.fileno())
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(sum(range(1000))))
    worker.start()
    worker.join()
    got: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: got.append(signum))
    os.kill(os.getpid(), signal.SIGTERM)
    executor = asyncio.run(_loop_work())
    return {"rows": rows, "thread": result, "sigterm": got, "executor": executor}


async def _loop_work() -> int:
    """An event loop with a signal handler and an executor thread, like a role's."""
    loop = asyncio.get_running_loop()
    event = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, event.set)
    os.kill(os.getpid(), signal.SIGUSR1)
    await asyncio.wait_for(event.wait(), 5)
    return await loop.run_in_executor(None, lambda: 7)


async def _serve() -> str:
    """Say "ready", then wait for SIGTERM the way a role's loop does."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    return "terminated"


def _act(action: str) -> object:
    match action:
        case "status":
            return _status()
        case "workload":
            return _workload(Path.cwd())
        case "network":
            return _network()
        case "serve":
            return asyncio.run(_serve())
    raise ValueError(action)


def _network() -> dict[str, object]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    req = struct.pack("16sH14s", b"lo", 0, b"")
    flags = struct.unpack("16sH14s", fcntl.ioctl(sock.fileno(), 0x8913, req))[1]
    out: dict[str, object] = {"lo_up": bool(flags & 1)}
    for host in ("1.1.1.1", "127.0.0.1"):
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(2)
        try:
            probe.connect((host, 9))
            out[host] = "ok"
        except OSError as exc:
            out[host] = _errname(exc)
        probe.close()
    return out


def _relax(policy: Policy, names: list[str]) -> Policy:
    """Allow ``names`` unconditionally (tests of the walls behind seccomp)."""
    rules = policy.seccomp
    seccomp = dataclasses.replace(
        rules, allow=rules.allow | set(names),
        rules=tuple(r for r in rules.rules if r.syscall not in names))
    return dataclasses.replace(policy, seccomp=seccomp)


def main() -> None:
    log.configure(json=True)  # events to stderr, as in a role; stdout carries results
    args = json.loads(sys.argv[1])
    datadirs = {k: Path(v) for k, v in args["datadirs"].items()}
    policy = load_policy(args["role"], datadirs=datadirs, options=args.get("options", {}),
                         providers=args.get("providers", {"chain": "node"}))
    policy = _relax(policy, args.get("relax", []))
    if args.get("default_action"):
        policy = dataclasses.replace(policy, seccomp=dataclasses.replace(
            policy.seccomp, default_action=args["default_action"]))
    if args.get("no_landlock"):
        policy = dataclasses.replace(policy, landlock=dataclasses.replace(
            policy.landlock, enabled=False))
    steps = apply(policy, SandboxContext(ipc_fd=None))
    os.chdir(datadirs[args["role"]])
    result = _act(args["action"])
    print(json.dumps({"steps": steps, "result": result}), flush=True)


if __name__ == "__main__":
    main()
