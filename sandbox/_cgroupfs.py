"""cgroupfs primitives shared by the supervisor-owned component cgroups and the legacy
child-side join: where each hierarchy is for this process, limit files, bounded waits."""

from __future__ import annotations

import errno
import os
import re
import select
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ._policy import CgroupLimits

CGROUP_PARENT = "bitcoin-supervisor"
# The leaf a pure-v2 supervisor moves itself into, so that its own cgroup may enable
# controllers for the component cgroups created beside it ("no internal processes").
SUPERVISOR_LEAF = "supervisor"
CONTROLLERS = ("memory", "pids")


@dataclass(frozen=True)
class Place:
    """Where one controller lives for this process: hierarchy version and own cgroup dir."""

    controller: str
    version: int
    parent: Path

    def leaf(self, name: str, pid: int) -> Path:
        """The legacy child-side cgroup of ``name`` started as ``pid``:
        ``<name>-<pid>.<pid namespace>``. A pid means something only in its own pid
        namespace, and the hierarchy is shared by every namespace on the host: without
        the namespace, a supervisor (or test suite) in a container pruned a cgroup it
        took for a dead process's while the process that had just made it, in another
        namespace, was about to join it."""
        return self.parent / CGROUP_PARENT / f"{name}-{pid}.{pid_namespace()}"


def pid_namespace() -> int:
    """Inode of this process's pid namespace (stable for its life; never raises: 0 when
    /proc cannot say)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def _unescape(field: str) -> str:
    """Mountinfo escapes blanks and backslashes as ``\\ooo``."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def mounts() -> list[tuple[str, Path, frozenset[str]]]:
    """(fstype, mount point, super options) of every cgroup and cgroup2 mount."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fstype, _source, options = (right.split() + ["", "", ""])[:3]
            if fstype in ("cgroup", "cgroup2"):
                out.append((fstype, Path(_unescape(left.split()[4])),
                            frozenset(options.split(","))))
    return out


def own_paths() -> dict[str, str]:
    """The calling process's cgroup per v1 controller; key ``""`` is the v2 cgroup."""
    out: dict[str, str] = {}
    with open("/proc/self/cgroup", encoding="utf-8") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                out[name] = path
    return out


def v2_own() -> Path | None:
    """The calling process's own cgroup directory in the cgroup2 hierarchy, or None when
    no cgroup2 hierarchy is mounted (or /proc cannot be read)."""
    try:
        found, own = mounts(), own_paths()
    except OSError:
        return None
    for fstype, point, _ in found:
        if fstype == "cgroup2" and "" in own:
            here = point / own[""].lstrip("/")
            if here.is_dir():
                return here
    return None


def v2_base() -> Path | None:
    """Where component cgroups go in the cgroup2 hierarchy: beside the supervisor's own
    leaf once ``prepare_supervisor_cgroup`` moved it there, else below its own cgroup."""
    own = v2_own()
    if own is not None and own.name == SUPERVISOR_LEAF:
        return own.parent
    return own


def v1_dir(controller: str) -> Path | None:
    """The calling process's own cgroup directory in the v1 hierarchy that carries
    ``controller``, or None when no such hierarchy is mounted."""
    try:
        found, own = mounts(), own_paths()
    except OSError:
        return None
    for fstype, point, options in found:
        if fstype == "cgroup" and controller in options and controller in own:
            here = point / own[controller].lstrip("/")
            if here.is_dir():
                return here
    return None


def available(cgroup: Path) -> list[str]:
    """The v2 controllers ``cgroup`` may hand to its children (empty when unreadable)."""
    try:
        return (cgroup / "cgroup.controllers").read_text().split()
    except OSError:
        return []


def locate(controller: str) -> Place | str:
    """Where ``controller`` is usable for the legacy child-side join (v2 preferred, in the
    caller's own cgroup), or why it is not. Never raises."""
    own = v2_own()
    if own is not None and controller in available(own):
        return Place(controller, 2, own)
    v1 = v1_dir(controller)
    if v1 is not None:
        return Place(controller, 1, v1)
    return (f"no {controller} controller (not enabled in this process's cgroup v2 "
            f"and no cgroup v1 {controller} hierarchy mounted)")


def places(controllers: Iterable[str]) -> tuple[list[Place], list[str]]:
    """``locate`` for each controller: the places found and the reasons for the rest."""
    found: list[Place] = []
    missing: list[str] = []
    for controller in controllers:
        where = locate(controller)
        if isinstance(where, str):
            missing.append(where)
        else:
            found.append(where)
    return found, missing


def enable(cgroup: Path, controller: str) -> None:
    """Enable ``controller`` for the children of v2 ``cgroup`` (no-op when it is)."""
    control = cgroup / "cgroup.subtree_control"
    if controller not in control.read_text().split():
        control.write_text(f"+{controller}")


def mkdir(path: Path, created: list[Path]) -> None:
    """Create ``path`` unless it exists; record it in ``created`` when this call made it."""
    try:
        path.mkdir()
    except FileExistsError:
        return
    created.append(path)


def rmdirs(paths: list[Path]) -> None:
    """Best-effort rmdir of ``paths`` in reverse order (undo of ``mkdir``)."""
    for path in reversed(paths):
        try:
            path.rmdir()
        except OSError:
            continue  # a shared parent another component uses meanwhile


def write_limits(leaf: Path, controller: str, version: int, limits: CgroupLimits) -> None:
    """Write ``limits``' value for ``controller`` into ``leaf``. Raises OSError."""
    match (controller, version):
        case ("memory", 2):
            _write(leaf / "memory.max", limits.memory_max)
            if (leaf / "memory.swap.max").exists():
                (leaf / "memory.swap.max").write_text("0")  # the limit is the total
        case ("memory", _):
            _write(leaf / "memory.limit_in_bytes", limits.memory_max)
            if (leaf / "memory.memsw.limit_in_bytes").exists():
                _write(leaf / "memory.memsw.limit_in_bytes", limits.memory_max)
        case ("pids", _):
            _write(leaf / "pids.max", limits.pids_max)


def _write(path: Path, limit: int | None) -> None:
    path.write_text("max" if limit is None else str(limit))


def procs(leaf: Path) -> list[int]:
    """The pids in ``leaf`` (exited ones, zombies included, are not listed); empty when
    it is gone. Raises OSError for other read errors."""
    try:
        return [int(p) for p in (leaf / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def wait_exited(pids: Iterable[int], timeout: float) -> None:
    """Wait up to ``timeout`` seconds until every pid has exited, on pidfds (no polling)."""
    poller = select.poll()
    fds = []
    try:
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            fds.append(fd)
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        pending = set(fds)
        while pending and (left := deadline - time.monotonic()) > 0:
            for fd, _ in poller.poll(left * 1000):
                poller.unregister(fd)
                pending.discard(fd)
    finally:
        for fd in fds:
            os.close(fd)


def rmdir_when_empty(leaf: Path, timeout: float) -> None:
    """rmdir ``leaf``, first waiting up to ``timeout`` s for the processes still in it to
    exit. Raises FileNotFoundError when it is gone, OSError (EBUSY) when it stays busy."""
    try:
        leaf.rmdir()
        return
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
    wait_exited(procs(leaf), timeout)
    leaf.rmdir()


_USAGE_FILES = {
    ("memory", "memory.current"): "memory_bytes",
    ("memory", "memory.peak"): "memory_peak_bytes",
    ("memory", "memory.usage_in_bytes"): "memory_bytes",
    ("memory", "memory.max_usage_in_bytes"): "memory_peak_bytes",
    ("pids", "pids.current"): "pids",
}


def read_usage(dirs: Mapping[str, Path]) -> dict[str, int]:
    """``memory_bytes``, ``memory_peak_bytes``, ``oom_kills`` and ``pids`` read from the
    leaf per controller in ``dirs`` (key ``""``: a v2 leaf holding every controller).
    Never raises: what cannot be read is an absent key."""
    def where(controller: str) -> Path | None:
        return dirs.get(controller, dirs.get(""))

    out: dict[str, int] = {}
    for (controller, filename), key in _USAGE_FILES.items():
        leaf = where(controller)
        if leaf is not None:
            try:
                out[key] = int((leaf / filename).read_text())
            except (OSError, ValueError):
                continue
    memory = where("memory")
    if memory is not None:
        for filename in ("memory.events", "memory.oom_control"):
            try:
                text = (memory / filename).read_text()
            except OSError:
                continue
            found = re.search(r"^oom_kill (\d+)$", text, re.MULTILINE)
            if found:
                out["oom_kills"] = int(found[1])
    return out
