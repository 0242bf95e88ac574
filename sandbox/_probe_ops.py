"""The operations of the probe matrix (``_probes``), run inside a sandboxed probe child:
each either returns (granted), raises OSError (refused with that errno) or is killed by
the filter."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyseccomp as seccomp

__all__ = ["OPS", "ProbeContext"]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_PROT_R, _PROT_W, _PROT_X = 1, 2, 4
_MAP_PRIVATE_ANON = 0x02 | 0x20
_MAP_FAILED = (1 << 64) - 1
_AT_FDCWD = -100


def _list_root() -> None:
    """/root must show nothing: absent from the view (ENOENT) or, where the installation
    itself lives below it (a checkout in root's home), present only as the path to it,
    which Landlock does not let the role list (EACCES): the same outcome, reported as
    ENOENT so the matrix pins one answer wherever the checkout sits."""
    try:
        os.listdir("/root")
    except PermissionError:
        if Path(__file__).resolve().is_relative_to("/root"):
            raise FileNotFoundError(errno.ENOENT, "/root shows nothing") from None
        raise


@dataclass(frozen=True)
class ProbeContext:
    """What an operation may use: datadirs, ports and pids taken before sandboxing."""

    role: str
    datadirs: Mapping[str, Path]
    rpcport: int
    supervisor_pid: int
    outside_pid: int
    leaked: int | None


def _check(result: int) -> None:
    if result == -1:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _sys(name: str, *args: int) -> None:
    """Call syscall ``name`` by number (no libc wrapper needed); OSError on failure."""
    number = seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)
    _check(int(_libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args))))


def _write(path: Path) -> None:
    with open(path, "wb") as fh:
        fh.write(b"probe")


def _read(path: Path) -> None:
    with open(path, "rb") as fh:
        fh.read(1)


def _write_fsync(ctx: ProbeContext) -> None:
    with open(ctx.datadirs[ctx.role] / "fsync.bin", "wb") as fh:
        fh.write(b"x" * 4096)
        fh.flush()
        os.fsync(fh.fileno())


def _chmod(ctx: ProbeContext, mode: int) -> None:
    path = ctx.datadirs[ctx.role] / "chmod.bin"
    path.write_bytes(b"#!/bin/sh\n")
    os.chmod(path, mode)


def _create(ctx: ProbeContext, syscall: str, mode: int) -> None:
    """Create a file in the datadir by the raw ``syscall`` (open, openat or creat)."""
    path = ctypes.create_string_buffer(os.fsencode(ctx.datadirs[ctx.role] / "created.bin"))
    address = ctypes.addressof(path)
    flags = os.O_CREAT | os.O_WRONLY
    match syscall:
        case "open":
            _sys("open", address, flags, mode)
        case "openat":
            _sys("openat", _AT_FDCWD, address, flags, mode)
        case _:
            _sys("creat", address, mode)


def _open_plain(ctx: ProbeContext) -> None:
    path = ctx.datadirs[ctx.role] / "plain.bin"
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o640))
    if os.stat(path).st_mode & 0o7137:  # at most the 0640 asked for
        raise OSError(errno.EIO, "unexpected mode")
    _read(path)


def _sqlite(ctx: ProbeContext) -> None:
    db = sqlite3.connect(ctx.datadirs[ctx.role] / "probe.sqlite")
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        with db:
            db.execute("CREATE TABLE t (v BLOB)")
            db.executemany("INSERT INTO t VALUES (?)", [(os.urandom(32),)] * 50)
        if db.execute("SELECT count(*) FROM t").fetchone()[0] != 50:
            raise OSError(errno.EIO, "rows lost")
    finally:
        db.close()


def _thread(_ctx: ProbeContext) -> None:
    box: list[int] = []
    worker = threading.Thread(target=lambda: box.append(42))
    worker.start()
    worker.join()
    if box != [42]:
        raise OSError(errno.EIO, "thread did not run")


def _signal_self(_ctx: ProbeContext) -> None:
    got: list[int] = []
    signal.signal(signal.SIGUSR1, lambda signum, _frame: got.append(signum))
    os.kill(os.getpid(), signal.SIGUSR1)
    if got != [signal.SIGUSR1]:
        raise OSError(errno.EIO, "signal not delivered")


def _bind(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()


def _connect_leaked(ctx: ProbeContext) -> None:
    assert ctx.leaked is not None
    with socket.socket(fileno=ctx.leaked) as sock:
        sock.connect(("127.0.0.1", 9))


def _wx_mmap(_ctx: ProbeContext) -> None:
    addr = _libc.mmap(None, 4096, _PROT_R | _PROT_W | _PROT_X, _MAP_PRIVATE_ANON, -1, 0)
    _check(-1 if addr == _MAP_FAILED else 0)


def _wx_mprotect(_ctx: ProbeContext) -> None:
    addr = _libc.mmap(None, 4096, _PROT_R | _PROT_W, _MAP_PRIVATE_ANON, -1, 0)
    _check(-1 if addr == _MAP_FAILED else 0)
    ctypes.memset(addr, 0xC3, 1)  # a `ret`: the page now holds code-to-be
    _check(_libc.mprotect(addr, 4096, _PROT_R | _PROT_X))


OPS: dict[str, Callable[[ProbeContext], object]] = {
    "inet_socket": lambda c: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close(),
    "udp_socket": lambda c: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close(),
    "netlink_socket": lambda c: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW).close(),
    "chmod_setuid": lambda c: _chmod(c, 0o4755),
    "chmod_plain": lambda c: _chmod(c, 0o600),
    "open_setuid": lambda c: _create(c, "open", 0o4755),
    "openat_setgid": lambda c: os.open(c.datadirs[c.role] / "setgid.bin",
                                       os.O_CREAT | os.O_WRONLY, 0o2755),
    "openat_setuid_high": lambda c: _create(c, "openat", 1 << 32 | 0o4755),
    "creat_setuid": lambda c: _create(c, "creat", 0o6755),
    "openat2": lambda c: _sys("openat2", _AT_FDCWD, 0, 0, 24),
    "open_plain": _open_plain,
    "connect_leaked": _connect_leaked,
    "bind_rpcport": lambda c: _bind(c.rpcport),
    "bind_other_port": lambda c: _bind(c.rpcport + 1),
    "write_outside_datadir": lambda c: _write(Path("/probe")),
    "write_usr": lambda c: _write(Path("/usr/probe")),
    "read_node_datadir": lambda c: _read(c.datadirs["node"] / "peers.dat"),
    "read_wallet_datadir": lambda c: _read(c.datadirs["wallet"] / "wallet.dat"),
    "read_index_datadir": lambda c: _read(c.datadirs["index"] / "index.db"),
    "read_node_blocks": lambda c: _read(c.datadirs["node"] / "blocks" / "blk00000.dat"),
    "write_node_blocks": lambda c: _write(c.datadirs["node"] / "blocks" / "blk00000.dat"),
    "read_shadow": lambda c: _read(Path("/etc/shadow")),
    "list_root": lambda c: _list_root(),
    "execve": lambda c: os.execv("/usr/bin/true", ["true"]),
    "fork": lambda c: os.fork(),
    "ptrace": lambda c: _sys("ptrace", 0, 0, 0, 0),
    "mount": lambda c: _check(_libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
    "unshare": lambda c: _sys("unshare", 0x10000000),
    "setns": lambda c: _sys("setns", 0, 0),
    "bpf": lambda c: _sys("bpf", 0, 0, 0),
    "io_uring_setup": lambda c: _sys("io_uring_setup", 1, 0),
    "userfaultfd": lambda c: _sys("userfaultfd", 0),
    "keyctl": lambda c: _sys("keyctl", 0, -3, 0),
    "perf_event_open": lambda c: _sys("perf_event_open", 0, 0, -1, -1, 0),
    "kill_supervisor": lambda c: os.kill(c.supervisor_pid, 0),
    "kill_outside_pid": lambda c: os.kill(c.outside_pid, 0),
    "wx_mmap": _wx_mmap,
    "wx_mprotect": _wx_mprotect,
    "write_fsync_datadir": _write_fsync,
    "sqlite_datadir": _sqlite,
    "thread": _thread,
    "signal_self": _signal_self,
}
