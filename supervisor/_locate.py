"""Where the CLI finds its daemon from any directory: the config search order and the
records running daemons leave in a runtime directory (systemctl works from anywhere).

Client path: stdlib only, nothing of the daemon (``tests/unit/test_cli_client.py``).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tomllib
import zlib
from dataclasses import dataclass
from pathlib import Path

from bitcoin_supervisor.interfaces import ConfigError

from ._client import DaemonNotRunning
from .control_protocol import CONTROL_SOCKET

__all__ = ["CONFIG_ENV", "CONFIG_NAME", "RUNTIME_ENV", "DaemonRecord", "Target",
           "config_candidates", "find_config", "locate_daemon", "publish_record",
           "retract_record", "running_daemons", "runtime_dir", "socket_path"]

CONFIG_ENV = "BITCOIN_SUPERVISOR_CONFIG"
RUNTIME_ENV = "BITCOIN_SUPERVISOR_RUNTIME_DIR"
CONFIG_NAME = "multiprocess.toml"
DEFAULT_DATADIR = ".bitcoin-supervisor"
_MAX_RECORD = 4096


@dataclass(frozen=True)
class DaemonRecord:
    """What a running daemon publishes: its pid, control socket, config and datadir."""

    pid: int
    socket: Path
    config: Path
    datadir: Path


@dataclass(frozen=True)
class Target:
    """The daemon a client verb talks to: its control socket, and the config and datadir
    override to load when the verb needs more than the socket (``rpc``)."""

    socket: Path
    config: Path | None
    datadir: str | None


def config_candidates() -> list[Path]:
    """The config files tried, in order, when neither ``--config`` nor
    ``$BITCOIN_SUPERVISOR_CONFIG`` names one."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return [Path(CONFIG_NAME), Path(xdg) / "bitcoin-supervisor" / CONFIG_NAME,
            Path("/etc/bitcoin-supervisor") / CONFIG_NAME]


def find_config(explicit: str | None) -> Path:
    """The config file to use: ``explicit`` (``--config``), else ``$BITCOIN_SUPERVISOR_CONFIG``
    (either is returned even if missing: the loader says so), else the first existing
    file of ``config_candidates()``. Raises ConfigError naming every place tried."""
    named = explicit or os.environ.get(CONFIG_ENV)
    if named:
        return Path(named)
    candidates = config_candidates()
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(f"no config file found (tried {', '.join(map(str, candidates))})",
                      hint=f"pass --config FILE or set {CONFIG_ENV}")


def socket_path(config: str | os.PathLike[str], datadir: str | None) -> Path:
    """Where the daemon started on ``config`` has its control socket:
    ``<datadir>/supervisor.sock``.

    ``datadir`` (the command line's ``--datadir``) wins; else ``[supervisor].datadir`` of
    the config, relative to the file's directory, as the daemon resolves it. Reads only
    that key: the full loader (and its file:line:col errors) runs only when the fast read
    fails. Raises ConfigError.
    """
    if datadir is not None:
        return Path(datadir).expanduser().resolve() / CONTROL_SOCKET
    path = Path(config)
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
        value = data.get("supervisor", {}).get("datadir", DEFAULT_DATADIR)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, AttributeError):
        value = None
    if not isinstance(value, str) or not value:
        # Let the real loader say what is wrong, with file:line:col and a hint.
        from ._config import load_config

        return load_config(path).datadir / CONTROL_SOCKET
    return (path.resolve().parent / Path(value).expanduser()).resolve() / CONTROL_SOCKET


def locate_daemon(config: str | None, datadir: str | None) -> Target:
    """The daemon a client verb should talk to: an explicit choice
    (``--datadir``, ``--config``, ``$BITCOIN_SUPERVISOR_CONFIG``) or ``./multiprocess.toml``,
    then the one running daemon recorded in ``runtime_dir()``, then the user's and the
    system's config file.

    Raises ConfigError when several daemons are recorded (the user must pick) or a config
    file is invalid; DaemonNotRunning (naming every place tried) when nothing is found.
    """
    if datadir is not None:
        return Target(socket_path("", datadir), None, datadir)
    candidates = config_candidates()
    named = config or os.environ.get(CONFIG_ENV)
    if named or candidates[0].is_file():
        path = Path(named) if named else candidates[0]
        return Target(socket_path(path, None), path, None)
    directory = runtime_dir()
    records, notes = running_daemons(directory) if directory else ([], [])
    if len(records) > 1:
        listed = "; ".join(f"pid {r.pid} (config {r.config})" for r in records)
        raise ConfigError(f"several daemons are running: {listed}",
                          hint="choose one with --config FILE or --datadir DIR")
    if records:
        return Target(records[0].socket, records[0].config, str(records[0].datadir))
    for path in candidates[1:]:
        if path.is_file():
            return Target(socket_path(path, None), path, None)
    tried = [f"none recorded in {directory}" if directory
             else "no runtime directory ($XDG_RUNTIME_DIR is not set)", *notes,
             *(f"no {p}" for p in candidates)]
    raise DaemonNotRunning("no running daemon found: " + "; ".join(tried)
                           + f"; start one with `bitcoin-supervisor start`, or pass "
                           f"--config FILE (or set {CONFIG_ENV})")


# -- runtime records -----------------------------------------------------------------------

def runtime_dir() -> Path | None:
    """Where running daemons record themselves: ``$BITCOIN_SUPERVISOR_RUNTIME_DIR``, else
    ``/run/bitcoin-supervisor`` for root, else ``$XDG_RUNTIME_DIR/bitcoin-supervisor``;
    None for a user without ``$XDG_RUNTIME_DIR``."""
    override = os.environ.get(RUNTIME_ENV)
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/run/bitcoin-supervisor")
    base = os.environ.get("XDG_RUNTIME_DIR")
    return Path(base) / "bitcoin-supervisor" if base else None


def _untrusted(st: os.stat_result, kind: int, loose: int) -> str | None:
    """Why a file with this stat must not be believed (None: it may be)."""
    if stat.S_IFMT(st.st_mode) != kind:
        return "wrong file type"
    if st.st_uid != os.geteuid():
        return f"owned by uid {st.st_uid}, not {os.geteuid()}"
    if st.st_mode & loose:
        return f"mode {stat.S_IMODE(st.st_mode):o} is too open"
    return None


def _read_record(path: Path) -> DaemonRecord:
    """Parse one record, refusing symlinks, files of other users and loose modes.
    Raises OSError or ValueError."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        why = _untrusted(os.fstat(fd), stat.S_IFREG, 0o077)
        if why:
            raise ValueError(why)
        data = json.loads(os.read(fd, _MAX_RECORD))
    finally:
        os.close(fd)
    record = DaemonRecord(int(data["pid"]), Path(data["socket"]), Path(data["config"]),
                          Path(data["datadir"]))
    if not all(p.is_absolute() for p in (record.socket, record.config, record.datadir)):
        raise ValueError("relative path")
    return record


def _alive(record: DaemonRecord) -> bool:
    try:
        os.kill(record.pid, 0)
        sock = os.lstat(record.socket)
    except PermissionError:
        return False  # another user's process took over the pid
    except OSError:
        return False
    return _untrusted(sock, stat.S_IFSOCK, 0) is None


def running_daemons(directory: Path) -> tuple[list[DaemonRecord], list[str]]:
    """The live daemons recorded in ``directory`` and a note per record ignored.

    A record counts only if the directory and the file belong to the caller's uid and
    nobody else can write them (the file is 0600), and its pid and socket still exist.
    Never raises.
    """
    try:
        why = _untrusted(os.lstat(directory), stat.S_IFDIR, 0o022)
        names = sorted(os.listdir(directory)) if why is None else []
    except OSError:
        return [], []
    if why:
        return [], [f"{directory} ignored ({why})"]
    records, notes = [], []
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            record = _read_record(directory / name)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            notes.append(f"{directory / name} ignored ({exc})")
            continue
        if _alive(record):
            records.append(record)
    return records, notes


def publish_record(pid: int, socket: Path, config: Path, datadir: Path, *,
                   directory: Path | None = None) -> Path | None:
    """Record a starting daemon in ``directory`` (default ``runtime_dir()``; created 0700,
    the file 0600 and replaced atomically); returns the record's path, None when there is
    no runtime directory. Raises OSError when the directory cannot be made or is not
    trustworthy."""
    directory = directory or runtime_dir()
    if directory is None:
        return None
    try:
        directory.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    why = _untrusted(os.lstat(directory), stat.S_IFDIR, 0o022)
    if why:
        raise OSError(errno.EPERM, f"{directory}: {why}")
    socket = socket.absolute()
    # A stable name per socket (a restarted daemon replaces its own record); not a
    # secret, so zlib's checksums rather than hashlib, which maps libcrypto into the
    # daemon for good (3.4 MiB of its RSS).
    raw = os.fsencode(socket)
    path = directory / f"{zlib.crc32(raw):08x}{zlib.adler32(raw):08x}.json"
    body = json.dumps({"pid": pid, "socket": str(socket), "config": str(config.resolve()),
                       "datadir": str(datadir.resolve())}).encode()
    temp = directory / f".{path.name}.{pid}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.write(fd, body)
    finally:
        os.close(fd)
    os.replace(temp, path)
    return path


def retract_record(path: Path, pid: int) -> None:
    """Remove the record at ``path`` if it still names ``pid`` (a later daemon on the same
    datadir may have replaced it). Never raises."""
    try:
        if _read_record(path).pid == pid:
            os.unlink(path)
    except (OSError, ValueError, KeyError, TypeError):
        pass
