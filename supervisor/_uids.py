"""Outer uids per supervisor instance: a range allocated host-wide, recorded in the datadir.

A root daemon runs each component as its own unprivileged outer uid. Taken from the
policy files alone, every instance on a host would run its node as 64101, so the wallet of
one instance and the node of another could share a uid (and each other's files on the
host). Instead each instance (one datadir) owns a range of ``RANGE_SIZE`` uids from a pool
no distribution or systemd hands out, and each component keeps one slot of it by name for
the life of the datadir, so its files stay its own across restarts.

Two files, both written under one lock: the host registry (which range belongs to which
datadir, ``REGISTRY``) and ``<datadir>/uids.json`` (this instance's range and its
components' slots). A range whose datadir is gone, or no longer records that range, is
free again: a deleted datadir took every file of those uids with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from bitcoin_supervisor.interfaces import SupervisorError
from bitcoin_supervisor.log import get_logger
from bitcoin_supervisor.sandbox import Policy

__all__ = ["POOL_FIRST", "RANGE_SIZE", "REGISTRY", "UID_FILE", "allocate_uids",
           "assign_outer_uids"]

# 0x78000000: above systemd's container range (up to 0x6FFFFFFF), below its foreign-uid
# range (0x7FFE0000) and 2^31 (signed-uid bugs in old tools); 1024 ranges of 64.
POOL_FIRST = 0x7800_0000
RANGE_SIZE = 64
POOL_RANGES = 1024
REGISTRY = Path("/var/lib/bitcoin-supervisor-uids/ranges.json")
UID_FILE = "uids.json"
_MAX_FILE = 1 << 20
_VERSION = 1

log = get_logger()


class _Confined(Protocol):
    name: str
    policy: Policy | None


def allocate_uids(datadir: Path, names: Iterable[str], *,
                  registry: Path = REGISTRY) -> dict[str, int]:
    """Return the outer uid (the gid is the same number) of every component in
    ``names`` for the instance whose state lives in ``datadir``, allocating its range and
    new components' slots as needed.

    Stable: the same datadir and name always get the same uid. Disjoint: no uid is given
    to two datadirs registered in the same ``registry``. Blocks on the registry's lock
    (held for milliseconds by other instances). Raises SupervisorError (one line) when a
    file is unsafe (a symlink, not root's, malformed), the pool or the range is full.
    """
    datadir.mkdir(parents=True, exist_ok=True, mode=0o700)
    datadir = Path(os.path.realpath(datadir))
    with _locked(registry):
        own = _instance(datadir, registry)
        slots: dict[str, int] = dict(own["components"])
        for name in names:
            if name not in slots:
                free = sorted(set(range(RANGE_SIZE)) - set(slots.values()))
                if not free:
                    raise SupervisorError(f"{datadir / UID_FILE}: all {RANGE_SIZE} uids of "
                                          "this instance are taken; remove old components")
                slots[name] = free[0]
        if slots != own["components"]:
            own["components"] = slots
            _write_json(datadir / UID_FILE, own)
    return {name: _base(own["range"]) + slot for name, slot in slots.items()}


def _instance(datadir: Path, registry: Path) -> dict[str, Any]:
    """This datadir's record (``uids.json``), its range registered; made if missing or no
    longer this datadir's (a copied datadir gets a range of its own). Lock held."""
    ranges = _read_registry(registry)
    own = _read_json(datadir / UID_FILE)
    index = _range_index(own)
    if own is not None and index is not None:
        entry = ranges.get(str(index))
        if entry is None:
            # A lost registry is rebuilt from the datadirs that still record their range.
            ranges[str(index)] = {"datadir": str(datadir), "instance": own["instance"]}
            _write_json(registry, {"version": _VERSION, "ranges": ranges})
            return own
        if _owned(entry, datadir, own):
            return own
    index = _free_range(ranges, datadir, registry)
    own = {"version": _VERSION, "instance": os.urandom(16).hex(), "range": index,
           "components": {}}
    ranges[str(index)] = {"datadir": str(datadir), "instance": own["instance"]}
    _write_json(registry, {"version": _VERSION, "ranges": ranges})
    _write_json(datadir / UID_FILE, own)
    log.info("uids.allocated", datadir=str(datadir), first=_base(index), count=RANGE_SIZE)
    return own


def assign_outer_uids(datadir: Path, components: Iterable[_Confined], *,
                      registry: Path = REGISTRY) -> None:
    """Give every sandboxed component its allocated outer uid/gid in place of the policy's
    ``[user]`` one (root daemons only; unprivileged, user namespaces map the uids and
    nothing changes). Raises SupervisorError like ``allocate_uids``."""
    if os.geteuid() != 0:
        return
    confined = [c for c in components if c.policy is not None]
    uids = allocate_uids(datadir, [c.name for c in confined], registry=registry)
    for component in confined:
        assert component.policy is not None
        uid = uids[component.name]
        component.policy = replace(component.policy, uid=uid, gid=uid)


def _base(index: int) -> int:
    return POOL_FIRST + index * RANGE_SIZE


def _range_index(own: dict[str, Any] | None) -> int | None:
    if own is None:
        return None
    index = own.get("range")
    ok = (isinstance(index, int) and 0 <= index < POOL_RANGES
          and isinstance(own.get("instance"), str) and isinstance(own.get("components"), dict)
          and all(isinstance(v, int) and 0 <= v < RANGE_SIZE
                  for v in own["components"].values()))
    return index if ok else None


def _owned(entry: object, datadir: Path, own: dict[str, Any] | None) -> bool:
    """The registry gives this range to this datadir's instance."""
    return (isinstance(entry, dict) and entry.get("datadir") == str(datadir)
            and own is not None and entry.get("instance") == own.get("instance"))


def _free_range(ranges: dict[str, Any], datadir: Path, registry: Path) -> int:
    for index in range(POOL_RANGES):
        entry = ranges.get(str(index))
        if entry is None or _stale(entry) or entry.get("datadir") == str(datadir):
            return index
    raise SupervisorError(f"{registry}: every uid range of the pool is taken "
                          f"({POOL_RANGES} instances); remove datadirs no longer used")


def _stale(entry: Any) -> bool:
    """A registered range whose datadir no longer records it (deleted or reset)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("datadir"), str):
        return True
    try:
        own = _read_json(Path(entry["datadir"]) / UID_FILE)
    except SupervisorError:
        return False  # unreadable is not gone: keep its range
    return own is None or own.get("instance") != entry.get("instance")


@contextlib.contextmanager
def _locked(registry: Path) -> Iterator[None]:
    registry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = registry.with_name(registry.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise SupervisorError(f"cannot open the uid registry lock {lock}: "
                              f"{exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read_registry(path: Path) -> dict[str, Any]:
    data = _read_json(path)
    if data is None:
        return {}
    ranges = data.get("ranges")
    if not isinstance(ranges, dict):
        raise SupervisorError(f"{path}: malformed uid registry (no 'ranges' table); "
                              "move it away to rebuild it from the datadirs")
    return ranges


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, None if there is no file. Only a regular file of our
    own uid is read, never through a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SupervisorError(f"refusing {path}: {exc.strerror} (a symlink?); move it "
                              "away") from exc
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise SupervisorError(f"refusing {path}: not a regular file owned by uid "
                                  f"{os.geteuid()}; move it away")
        raw = fh.read(_MAX_FILE + 1)
    try:
        data = json.loads(raw) if len(raw) <= _MAX_FILE else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("version") != _VERSION:
        raise SupervisorError(f"{path}: malformed uid allocation file; move it away")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, sort_keys=True, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
