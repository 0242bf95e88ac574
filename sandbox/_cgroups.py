"""Child-side per-component cgroups (the path ``apply`` still takes until the trampoline
uses ``create_cgroup``): find the memory and pids controllers (v2 or v1) at run time,
move the calling process into a cgroup of its own with the policy's limits, and remove
that cgroup once the component is gone; plus what ``status`` shows about them.

Each component gets ``<own cgroup>/bitcoin-supervisor/<name>-<pid>.<pid namespace>`` in
every hierarchy
that carries a controller it needs, where ``<own cgroup>`` is the cgroup the caller
inherited from the supervisor (nested, so limits set above the supervisor still hold).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from bitcoin_supervisor.interfaces import SandboxError
from bitcoin_supervisor.log import get_logger

from ._cgroupfs import (
    CGROUP_PARENT,
    CONTROLLERS,
    Place,
    enable,
    mkdir,
    pid_namespace,
    read_usage,
    rmdir_when_empty,
    rmdirs,
    write_limits,
)
from ._cgroupfs import (
    places as find_places,
)
from ._policy import CgroupLimits, Policy

__all__ = ["CGROUP_PARENT", "cgroup_dirs", "cgroup_summary", "cgroup_usage", "join_cgroups",
           "remove_cgroups"]

# How long remove_cgroups waits for processes killed with the component to finish exiting.
_EXIT_WAIT_S = 0.5


def cgroup_dirs(name: str, pid: int) -> dict[str, Path]:
    """Return the cgroup directory of component ``name`` started as ``pid`` for each
    controller found on this host (whether or not it exists). Pure probing of /proc;
    never raises. Valid in the supervisor and in the component before it joins."""
    places, _ = find_places(CONTROLLERS)
    return {p.controller: p.leaf(name, pid) for p in places}


def join_cgroups(limits: CgroupLimits, name: str, source: Path) -> dict[str, Path] | None:
    """Move the calling process (and so every process it later forks) into its own
    cgroup ``<own>/bitcoin-supervisor/<name>-<pid>.<pid namespace>`` with ``limits``
    written first.

    Returns the directory per controller, or None when the limits were skipped because
    the host cannot apply them and ``limits.optional`` allows that (logs
    ``cgroup.skipped``). Raises SandboxError naming what is missing and what to do when
    it does not. Call while still privileged, before dropping the uid and before
    unshare(CLONE_NEWCGROUP). Blocks only on cgroupfs writes.
    """
    pid = os.getpid()
    places, missing = find_places(limits.controllers())
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
        rmdirs(created)
        where = f"{exc.filename}: " if exc.filename else ""
        _unavailable(limits, name, pid, f"{where}{exc.strerror}", source)
        return None
    dirs = {p.controller: leaf for p, leaf in zip(places, leaves, strict=True)}
    get_logger().info("cgroup.joined", component=name, pid=pid,
                      version=_version(places), memory_max=limits.memory_max,
                      pids_max=limits.pids_max, dirs={k: str(v) for k, v in dirs.items()})
    return dirs


def _prepare(place: Place, name: str, pid: int, limits: CgroupLimits,
             created: list[Path]) -> Path:
    """Create the component's cgroup in ``place``'s hierarchy and write its limit there."""
    leaf = place.leaf(name, pid)
    if place.version == 2:
        # v2 hands a controller to children only when every ancestor's subtree_control
        # enables it; the supervisor's own cgroup must be a delegated one (or the root).
        enable(place.parent, place.controller)
        mkdir(leaf.parent, created)
        enable(leaf.parent, place.controller)
    else:
        mkdir(leaf.parent, created)
    mkdir(leaf, created)
    write_limits(leaf, place.controller, place.version, limits)
    return leaf


def _prune(parent: Path, name: str, pid: int) -> None:
    """Remove the cgroups of components whose process is gone, in case nobody called
    remove_cgroups for them (a crashed supervisor, a component started by hand). Only
    those named for this pid namespace: another namespace's pids cannot be checked here
    (see ``Place.leaf``)."""
    pruned = []
    namespace = str(pid_namespace())
    try:
        entries = list(parent.iterdir()) if parent.is_dir() else []
    except OSError:
        return
    for entry in entries:
        # Names with "@" belong to supervisor-owned cgroups (``create_cgroup``): their
        # owner removes them, and the number in them is no pid.
        found = re.fullmatch(r"[^@]+-(\d+)\.(\d+)", entry.name)
        if (not found or found[2] != namespace or not entry.is_dir()
                or _alive(int(found[1]))):
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


def _version(places: list[Place]) -> str | None:
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
            rmdir_when_empty(leaf, _EXIT_WAIT_S)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cgroup.remove_failed", component=name, pid=pid,
                        controller=controller, dir=str(leaf), error=exc.strerror)
            continue
        log.info("cgroup.removed", component=name, pid=pid, controller=controller,
                 dir=str(leaf))


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
    places, missing = find_places(limits.controllers())
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
    return read_usage(cgroup_dirs(name, pid))
