"""Per-component cgroups: find the memory and pids controllers (v2 or v1) at run time,
move the calling process into a cgroup of its own with the policy's limits, and remove
that cgroup once the component is gone.

Each component gets ``<own cgroup>/bitcoin-supervisor/<name>-<pid>`` in every hierarchy
that carries a controller it needs, where ``<own cgroup>`` is the cgroup the caller
inherited from the supervisor (nested, so limits set above the supervisor still hold).
"""

from __future__ import annotations

import errno
import os
import re
import select
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitcoin_supervisor.interfaces import SandboxError
from bitcoin_supervisor.log import get_logger

from ._policy import CgroupLimits, Policy

__all__ = ["CGROUP_PARENT", "cgroup_dirs", "cgroup_summary", "cgroup_usage", "join_cgroups",
           "remove_cgroups"]

CGROUP_PARENT = "bitcoin-supervisor"
CONTROLLERS = ("memory", "pids")
# How long remove_cgroups waits for processes killed with the component to finish exiting.
_EXIT_WAIT_S = 0.5


@dataclass(frozen=True)
class _Place:
    """Where one controller lives for this process: hierarchy version and own cgroup dir."""

    controller: str
    version: int
    parent: Path

    def leaf(self, name: str, pid: int) -> Path:
        return self.parent / CGROUP_PARENT / f"{name}-{pid}"


def _unescape(field: str) -> str:
    """Mountinfo escapes blanks and backslashes as ``\\ooo``."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def _mounts() -> list[tuple[str, Path, frozenset[str]]]:
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


def _own_paths() -> dict[str, str]:
    """The calling process's cgroup per v1 controller; key ``""`` is the v2 cgroup."""
    out: dict[str, str] = {}
    with open("/proc/self/cgroup", encoding="utf-8") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                out[name] = path
    return out


def _locate(controller: str) -> _Place | str:
    """Where ``controller`` is usable (v2 preferred), or why it is not (never raises)."""
    try:
        mounts, own = _mounts(), _own_paths()
    except OSError as exc:
        return f"cannot read /proc/self: {exc.strerror}"
    for fstype, point, _ in mounts:
        if fstype == "cgroup2" and "" in own:
            here = point / own[""].lstrip("/")
            try:
                available = (here / "cgroup.controllers").read_text().split()
            except OSError:
                continue
            if controller in available:
                return _Place(controller, 2, here)
    for fstype, point, options in mounts:
        if fstype == "cgroup" and controller in options and controller in own:
            here = point / own[controller].lstrip("/")
            if here.is_dir():
                return _Place(controller, 1, here)
    return (f"no {controller} controller (not enabled in this process's cgroup v2 "
            f"and no cgroup v1 {controller} hierarchy mounted)")


def _places(controllers: tuple[str, ...]) -> tuple[list[_Place], list[str]]:
    places: list[_Place] = []
    missing: list[str] = []
    for controller in controllers:
        found = _locate(controller)
        if isinstance(found, str):
            missing.append(found)
        else:
            places.append(found)
    return places, missing


def cgroup_dirs(name: str, pid: int) -> dict[str, Path]:
    """Return the cgroup directory of component ``name`` started as ``pid`` for each
    controller found on this host (whether or not it exists). Pure probing of /proc;
    never raises. Valid in the supervisor and in the component before it joins."""
    places, _ = _places(CONTROLLERS)
    return {p.controller: p.leaf(name, pid) for p in places}


def join_cgroups(limits: CgroupLimits, name: str, source: Path) -> dict[str, Path] | None:
    """Move the calling process (and so every process it later forks) into its own
    cgroup ``<own>/bitcoin-supervisor/<name>-<pid>`` with ``limits`` written first.

    Returns the directory per controller, or None when the limits were skipped because
    the host cannot apply them and ``limits.optional`` allows that (logs
    ``cgroup.skipped``). Raises SandboxError naming what is missing and what to do when
    it does not. Call while still privileged, before dropping the uid and before
    unshare(CLONE_NEWCGROUP). Blocks only on cgroupfs writes.
    """
    pid = os.getpid()
    places, missing = _places(limits.controllers())
    if missing:
        _unavailable(limits, name, pid, "; ".join(missing), source)
        return None
    for parent in {p.leaf(name, pid).parent for p in places}:
        _prune(parent, name, pid)
    created: list[Path] = []
    try:
        leaves = [_prepare(place, name, pid, limits, created) for place in places]
        for leaf in dict.fromkeys(leaves):
            (leaf / "cgroup.procs").write_text(str(pid))
    except OSError as exc:
        _rmdirs(created)
        where = f"{exc.filename}: " if exc.filename else ""
        _unavailable(limits, name, pid, f"{where}{exc.strerror}", source)
        return None
    dirs = {p.controller: leaf for p, leaf in zip(places, leaves, strict=True)}
    get_logger().info("cgroup.joined", component=name, pid=pid,
                      version=_version(places), memory_max=limits.memory_max,
                      pids_max=limits.pids_max, dirs={k: str(v) for k, v in dirs.items()})
    return dirs


def _prepare(place: _Place, name: str, pid: int, limits: CgroupLimits,
             created: list[Path]) -> Path:
    """Create the component's cgroup in ``place``'s hierarchy and write its limit there."""
    leaf = place.leaf(name, pid)
    if place.version == 2:
        # v2 hands a controller to children only when every ancestor's subtree_control
        # enables it; the supervisor's own cgroup must be a delegated one (or the root).
        _enable(place.parent, place.controller)
        _mkdir(leaf.parent, created)
        _enable(leaf.parent, place.controller)
    else:
        _mkdir(leaf.parent, created)
    _mkdir(leaf, created)
    match (place.controller, place.version):
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
    return leaf


def _prune(parent: Path, name: str, pid: int) -> None:
    """Remove the cgroups of components whose process is gone, in case nobody called
    remove_cgroups for them (a crashed supervisor, a component started by hand)."""
    pruned = []
    try:
        entries = list(parent.iterdir()) if parent.is_dir() else []
    except OSError:
        return
    for entry in entries:
        found = re.fullmatch(r".+-(\d+)", entry.name)
        if not found or not entry.is_dir() or _alive(int(found[1])):
            continue
        try:
            entry.rmdir()  # refused (EBUSY) while any process is still inside
        except OSError:
            continue
        pruned.append(entry.name)
    if pruned:
        get_logger().info("cgroup.pruned", component=name, pid=pid, dirs=pruned)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _enable(cgroup: Path, controller: str) -> None:
    control = cgroup / "cgroup.subtree_control"
    if controller not in control.read_text().split():
        control.write_text(f"+{controller}")


def _mkdir(path: Path, created: list[Path]) -> None:
    try:
        path.mkdir()
    except FileExistsError:
        return  # the shared parent, or a dead component's leaf left behind (empty)
    created.append(path)


def _write(path: Path, limit: int | None) -> None:
    path.write_text("max" if limit is None else str(limit))


def _rmdirs(paths: list[Path]) -> None:
    for path in reversed(paths):
        try:
            path.rmdir()
        except OSError:
            continue  # a shared parent another component uses meanwhile


def _unavailable(limits: CgroupLimits, name: str, pid: int, reason: str,
                 source: Path) -> None:
    """Warn when ``limits`` may be skipped on this host, else raise SandboxError."""
    optional = limits.optional == "yes" or (limits.optional == "unprivileged"
                                            and os.geteuid() != 0)
    if optional:
        get_logger().warning("cgroup.skipped", component=name, pid=pid, reason=reason,
                             memory_max=limits.memory_max, pids_max=limits.pids_max)
        return
    raise SandboxError(
        f"cgroup limits of {name} ({_describe(limits)}) cannot be applied: {reason}. "
        f"Run the supervisor as root or in a delegated cgroup with the "
        f"{' and '.join(limits.controllers())} controller(s), or set [cgroup] optional = "
        f"true in {source}")


def _describe(limits: CgroupLimits) -> str:
    return ", ".join(f"{k} {v}" for k, v in (("memory_max", limits.memory_max),
                                             ("pids_max", limits.pids_max)) if v is not None)


def _version(places: list[_Place]) -> str | None:
    versions = sorted({p.version for p in places})
    return "+".join(f"v{v}" for v in versions) or None


def remove_cgroups(name: str, pid: int) -> None:
    """Remove the cgroup directories of component ``name`` started as ``pid`` (the pid
    the supervisor spawned: the process that called ``apply``). Call after reaping it.

    Directories that do not exist are fine. Never raises: failures are logged as
    ``cgroup.remove_failed``. Blocks at most ~0.5 s, and only while processes killed with
    the component are still exiting.
    """
    log = get_logger()
    leaves: dict[Path, str] = {}
    for controller, leaf in cgroup_dirs(name, pid).items():
        leaves[leaf] = leaves[leaf] + "," + controller if leaf in leaves else controller
    for leaf, controller in leaves.items():
        try:
            _rmdir_when_empty(leaf)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cgroup.remove_failed", component=name, pid=pid,
                        controller=controller, dir=str(leaf), error=exc.strerror)
            continue
        log.info("cgroup.removed", component=name, pid=pid, controller=controller,
                 dir=str(leaf))


def _rmdir_when_empty(leaf: Path) -> None:
    try:
        leaf.rmdir()
        return
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
    _wait_exited([int(p) for p in (leaf / "cgroup.procs").read_text().split()])
    leaf.rmdir()


def _wait_exited(pids: list[int]) -> None:
    """Wait (bounded) until every pid has exited, on pidfds rather than by polling."""
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
        deadline = time.monotonic() + _EXIT_WAIT_S
        pending = set(fds)
        while pending and (left := deadline - time.monotonic()) > 0:
            for fd, _ in poller.poll(left * 1000):
                poller.unregister(fd)
                pending.discard(fd)
    finally:
        for fd in fds:
            os.close(fd)


def cgroup_summary(policy: Policy) -> dict[str, Any]:
    """What ``status`` shows about a role's cgroup limits: ``memory_max`` and
    ``pids_max`` (bytes / count, None = no limit), ``optional``, the hierarchy
    ``version`` used on this host (``"v1"``, ``"v2"``, ``"v1+v2"`` or None) and
    ``unavailable`` (why the limits cannot be applied here, else None). Probes /proc and
    cgroupfs (no writes); never raises."""
    limits = policy.cgroup
    if limits is None:
        return {"memory_max": None, "pids_max": None, "optional": None, "version": None,
                "unavailable": "no [cgroup] section in the policy"}
    places, missing = _places(limits.controllers())
    denied = [str(p.parent) for p in places if not os.access(p.parent, os.W_OK)]
    if denied and not missing:
        missing = [f"no permission to create cgroups under {', '.join(denied)}"]
    return {"memory_max": limits.memory_max, "pids_max": limits.pids_max,
            "optional": limits.optional, "version": _version(places),
            "unavailable": "; ".join(missing) or None}


def cgroup_usage(name: str, pid: int) -> dict[str, int]:
    """Current usage of component ``name`` started as ``pid``: ``memory_bytes``,
    ``memory_peak_bytes``, ``oom_kills`` and ``pids``, for
    whichever of its cgroups exist. Reads cgroupfs; never raises (missing = absent key)."""
    out: dict[str, int] = {}
    files = {
        ("memory", "memory.current"): "memory_bytes",
        ("memory", "memory.peak"): "memory_peak_bytes",
        ("memory", "memory.usage_in_bytes"): "memory_bytes",
        ("memory", "memory.max_usage_in_bytes"): "memory_peak_bytes",
        ("pids", "pids.current"): "pids",
    }
    dirs = cgroup_dirs(name, pid)
    for (controller, filename), key in files.items():
        if controller in dirs:
            try:
                out[key] = int((dirs[controller] / filename).read_text())
            except (OSError, ValueError):
                continue
    if "memory" in dirs:
        for filename in ("memory.events", "memory.oom_control"):
            try:
                text = (dirs["memory"] / filename).read_text()
            except OSError:
                continue
            found = re.search(r"^oom_kill (\d+)$", text, re.MULTILINE)
            if found:
                out["oom_kills"] = int(found[1])
    return out
