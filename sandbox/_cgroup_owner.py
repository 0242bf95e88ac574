"""Supervisor-owned component cgroups: created and limited before the spawn, joined by the
trampoline through inherited fds, and used to kill the component's whole process tree.

Layout. cgroup v1 (and hybrid hosts, where memory and pids live in v1): one leaf
``<own>/bitcoin-supervisor/<name>`` in each hierarchy needed, always including the
freezer, which ``kill`` uses. Pure v2: one leaf ``<base>/<name>`` beside the
supervisor's own leaf (``prepare_supervisor_cgroup``), killed through ``cgroup.kill``.

Joining. The trampoline inherits one ``cgroup.procs`` fd per leaf, opened by the
supervisor, and writes ``0`` to each (``join_cgroup_fds``) before anything else: the
kernel then moves the writer itself. ``CLONE_INTO_CGROUP`` would save that step on v2,
but Python's subprocess cannot clone3, and the fd path works alike on v1 and v2.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from bitcoin_supervisor.interfaces import SandboxError
from bitcoin_supervisor.log import get_logger

from ._cgroup_join import join_cgroup_fds
from ._cgroup_v2 import prepare_supervisor_cgroup
from ._cgroupfs import (
    CGROUP_PARENT,
    available,
    enable,
    mkdir,
    procs,
    read_usage,
    rmdir_when_empty,
    rmdirs,
    v1_dir,
    v2_base,
    wait_exited,
    write_limits,
)
from ._policy import CgroupLimits

__all__ = ["ComponentCgroup", "create_cgroup", "join_cgroup_fds"]

# One id per supervisor process: names never collide between installations, restarts or
# pid namespaces that share a cgroup parent (pids alone did: issue 12).
# os.urandom, not secrets: secrets imports hmac and hashlib, which map libcrypto into the
# daemon (3.4 MiB of its RSS) for a random name.
RUN_ID = os.urandom(4).hex()
_SEQ = itertools.count(1)
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# kill: rounds of freeze/SIGKILL/thaw, and how long each waits for the killed to exit.
_KILL_ROUNDS = 5
_EXIT_WAIT_S = 1.0
_FREEZE_WAIT_S = 1.0
_REMOVE_WAIT_S = 0.5


class ComponentCgroup:
    """The cgroup(s) of one component run, owned by the supervisor (``create_cgroup``).

    ``name`` is unique per run (``<component>@<run id>.<seq>``); ``dirs`` maps each v1
    controller (or ``""`` for the v2 hierarchy) to its leaf directory.
    """

    def __init__(self, component: str, name: str, dirs: Mapping[str, Path],
                 fds: list[int]) -> None:
        self.component = component
        self.name = name
        self.dirs: Mapping[str, Path] = MappingProxyType(dict(dirs))
        self._fds = fds
        self._closed = False

    @property
    def version(self) -> str:
        """``"v2"`` when the component lives in the v2 hierarchy, else ``"v1"``."""
        return "v2" if "" in self.dirs else "v1"

    def leaves(self) -> list[Path]:
        """The distinct leaf directories (one per hierarchy)."""
        return list(dict.fromkeys(self.dirs.values()))

    def join_fds(self) -> list[int]:
        """The fds (``cgroup.procs`` of each leaf, opened write-only and close-on-exec)
        that the spawned trampoline must inherit and hand to ``join_cgroup_fds``. Raises
        SandboxError after ``close_fds``."""
        if self._closed:
            raise SandboxError(f"cgroup {self.name}: join fds already closed")
        return list(self._fds)

    def close_fds(self) -> None:
        """Close the supervisor's copies of the join fds (call once the child is
        spawned). Idempotent; never raises."""
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                continue
        self._fds, self._closed = [], True

    def pids(self) -> set[int]:
        """Every process in the leaves now. Never raises (unreadable = empty)."""
        found: set[int] = set()
        for leaf in self.leaves():
            try:
                found.update(procs(leaf))
            except OSError:
                continue
        return found

    def kill(self) -> None:
        """SIGKILL every process in the cgroup, descendants that left their parent
        included, and wait for them to exit, so none survives: v2 writes ``cgroup.kill``;
        v1 freezes the freezer leaf (no fork can escape), SIGKILLs each pid, thaws, and
        repeats until the cgroup is empty. Blocks at most ~6 s (a process stuck in the
        kernel); what survives that is logged as ``cgroup.kill_incomplete``. Never raises.
        """
        start = time.monotonic()
        rounds = killed = 0
        while rounds < _KILL_ROUNDS and (pids := self.pids()):
            rounds += 1
            killed += self._kill_round(pids)
        left = self.pids()
        log = get_logger()
        ms = round((time.monotonic() - start) * 1000, 3)
        if left:
            log.warning("cgroup.kill_incomplete", component=self.component, cgroup=self.name,
                        pids=sorted(left), rounds=rounds, ms=ms)
        elif rounds:
            log.info("cgroup.killed", component=self.component, cgroup=self.name,
                     killed=killed, rounds=rounds, ms=ms)

    def _kill_round(self, pids: set[int]) -> int:
        v2 = self.dirs.get("")
        if v2 is not None and _write(v2 / "cgroup.kill", "1"):
            wait_exited(pids, _EXIT_WAIT_S)
            return len(pids)
        freezer = self.dirs.get("freezer")
        try:
            frozen = freezer is not None and _freeze(freezer)
            pids = self.pids() if frozen else pids  # frozen: this list is complete
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
        finally:
            if freezer is not None:  # frozen tasks die only once thawed
                _write(freezer / "freezer.state", "THAWED")
        wait_exited(pids, _EXIT_WAIT_S)
        return len(pids)

    def usage(self) -> dict[str, int]:
        """``memory_bytes``, ``memory_peak_bytes``, ``oom_kills`` and ``pids`` of this
        cgroup (absent keys: not readable, e.g. no such controller). Never raises."""
        return read_usage(self.dirs)

    def remove(self) -> None:
        """Close the join fds and rmdir every leaf, waiting up to ~0.5 s per leaf for
        processes still exiting (call ``kill`` first). Idempotent; never raises:
        failures are logged as ``cgroup.remove_failed``."""
        self.close_fds()
        log = get_logger()
        for leaf in self.leaves():
            try:
                rmdir_when_empty(leaf, _REMOVE_WAIT_S)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("cgroup.remove_failed", component=self.component,
                            cgroup=self.name, dir=str(leaf), error=exc.strerror)
                continue
            log.info("cgroup.removed", component=self.component, cgroup=self.name,
                     dir=str(leaf))


def create_cgroup(limits: CgroupLimits | None, component: str, *, source: Path,
                  instance: str | None = None) -> ComponentCgroup | None:
    """Create the cgroup of one run of ``component`` before it is spawned: the leaf in
    each hierarchy needed, ``limits`` written, the join fds opened. Without ``limits`` it
    still gets a freezer (v1) or v2 leaf, so that ``kill`` reaches the whole tree.

    The name is ``<component>@<instance>.<seq>``; ``instance`` defaults to a random id of
    this process (a caller passing its own must keep it unique per running supervisor).
    On pure v2 this first calls ``prepare_supervisor_cgroup``. Unprivileged, on a host
    whose v1 hierarchies it may not write, the leaf goes in the caller's delegated v2
    cgroup (systemd's ``Delegate=yes``) with the limits that cgroup can carry; the others
    are logged as ``cgroup.limits_skipped`` when ``limits.optional`` allows, else refused
    as below. Returns None when the host cannot provide the cgroup and
    ``limits.optional`` allows running without (or there are no limits): logs
    ``cgroup.skipped``. Raises SandboxError (one line: what is
    missing, what to do, ``source``) otherwise. Blocks only on cgroupfs writes.
    """
    if not _NAME.fullmatch(component) or (instance and not _NAME.fullmatch(instance)):
        raise SandboxError(f"cannot name a cgroup after component {component!r}: use "
                           f"letters, digits, '_', '.' and '-' only")
    name = f"{component}@{instance or RUN_ID}.{next(_SEQ)}"
    parents, missing = _plan(limits)
    if missing:
        _unavailable(limits, component, name, missing, source)
        return None
    needed = limits.controllers() if limits else ()
    v2_controllers = needed if set(parents) == {""} else ()
    if os.geteuid() != 0:
        parents, v2_controllers = _delegated(parents, needed, v2_controllers)
        if skipped := [c for c in needed if c not in parents and c not in v2_controllers]:
            _unavailable(limits, component, name, f"no {' and '.join(skipped)} controller in "
                         f"the delegated cgroup {parents.get('')}", source, created=True)
    created: list[Path] = []
    fds: list[int] = []
    try:
        dirs = _make(parents, name, limits, created, v2_controllers)
        for leaf in dict.fromkeys(dirs.values()):
            fds.append(os.open(leaf / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        rmdirs(created)
        where = f"{exc.filename}: " if exc.filename else ""
        _unavailable(limits, component, name, f"{where}{exc.strerror}", source)
        return None
    cgroup = ComponentCgroup(component, name, dirs, fds)
    get_logger().info("cgroup.created", component=component, cgroup=name,
                      version=cgroup.version,
                      memory_max=limits.memory_max if limits else None,
                      pids_max=limits.pids_max if limits else None,
                      dirs={k or "v2": str(v) for k, v in dirs.items()})
    return cgroup


def _plan(limits: CgroupLimits | None) -> tuple[dict[str, Path], str]:
    """Parent directory per key of ``dirs`` (``""`` = v2), or why the host cannot."""
    needed = limits.controllers() if limits else ()
    base = v2_base()
    offered = available(base) if base is not None else []
    if base is not None and needed and all(c in offered for c in needed):
        return {"": base}, ""  # pure v2 (or v2 carrying every controller needed)
    parents: dict[str, Path] = {}
    missing = []
    for controller in (*needed, "freezer"):
        found = v1_dir(controller)
        if found is not None:
            parents[controller] = found / CGROUP_PARENT
        elif controller != "freezer":
            missing.append(f"no {controller} controller (neither offered to this "
                           f"process's cgroup v2 nor a cgroup v1 hierarchy)")
    if "freezer" not in parents and base is not None and not missing:
        # No v1 freezer: a v2 leaf (cgroup.kill) holds the tree; v1 leaves, if any, still
        # carry the limits (a hybrid host without a mounted freezer hierarchy).
        parents[""] = base
        return parents, ""
    if not parents and not missing:
        missing.append("no cgroup v1 freezer and no cgroup2 hierarchy to hold it")
    return parents, "; ".join(missing)


def _delegated(parents: dict[str, Path], needed: tuple[str, ...],
               v2_controllers: tuple[str, ...]) -> tuple[dict[str, Path], tuple[str, ...]]:
    """Unprivileged: the cgroup v1 hierarchies (hybrid hosts) are root's, and systemd
    delegates (``Delegate=yes``) only a v2 subtree. When a v1 parent is not writable but
    the caller's own v2 cgroup is, the component gets a v2 leaf there instead (its tree
    held and killed through ``cgroup.kill``), with the limits of the controllers that
    cgroup offers. Returns the parents and those v2 controllers (unchanged otherwise)."""
    base = v2_base()
    usable = {k: p for k, p in parents.items() if k == "" or _writable(p)}
    if usable == parents or base is None or not _writable(base):
        return parents, v2_controllers
    usable[""] = base
    offered = available(base)
    return usable, tuple(c for c in needed if c not in usable and c in offered)


def _writable(path: Path) -> bool:
    """Whether this process may create ``path`` (or entries in it, when it exists)."""
    return os.access(path if path.exists() else path.parent, os.W_OK)


def _make(parents: Mapping[str, Path], name: str, limits: CgroupLimits | None,
          created: list[Path], v2_controllers: Sequence[str]) -> dict[str, Path]:
    """Create each leaf and write its limits (``v2_controllers``' in the v2 leaf, each v1
    controller's in its own); record every directory made in ``created``."""
    needed = limits.controllers() if limits else ()
    dirs: dict[str, Path] = {}
    for key, parent in parents.items():
        if key == "" and v2_controllers:
            # v2 hands controllers to a child only from a cgroup without processes.
            base = prepare_supervisor_cgroup(v2_controllers) or parent
            for controller in v2_controllers:
                enable(base, controller)
        elif key != "":
            mkdir(parent, created)  # the shared <own>/bitcoin-supervisor
        leaf = parent / name
        leaf.mkdir()  # never an existing one: it would be another run's
        created.append(leaf)
        dirs[key] = leaf
        if limits is None:
            continue
        for controller in (v2_controllers if key == ""
                           else [key] if key in needed else []):
            write_limits(leaf, controller, 2 if key == "" else 1, limits)
    return dirs


def _unavailable(limits: CgroupLimits | None, component: str, name: str, reason: str,
                 source: Path, *, created: bool = False) -> None:
    """Warn when running without the cgroup (``created``: without some of its limits) is
    allowed, else raise SandboxError."""
    optional = limits is None or limits.optional == "yes" or (
        limits.optional == "unprivileged" and os.geteuid() != 0)
    if optional:
        get_logger().warning("cgroup.limits_skipped" if created else "cgroup.skipped",
                             component=component, cgroup=name,
                             reason=reason,
                             memory_max=limits.memory_max if limits else None,
                             pids_max=limits.pids_max if limits else None)
        return
    needs = " and ".join(limits.controllers()) if limits else "freezer"
    raise SandboxError(
        f"cgroup of {component} cannot be created: {reason}. Run the supervisor as root "
        f"or in a delegated cgroup with the {needs} controller(s), or set [cgroup] "
        f"optional = true in {source}")


def _freeze(freezer: Path) -> bool:
    """Freeze a v1 freezer leaf and wait (bounded) until every task in it is frozen.

    freezer.state offers no change notification, so this polls with a doubling pause;
    freezing takes ~2 ms here. False when it did not reach FROZEN in time (then each
    pid is killed unfrozen and the next round catches what forked meanwhile).
    """
    if not _write(freezer / "freezer.state", "FROZEN"):
        return False
    deadline, pause = time.monotonic() + _FREEZE_WAIT_S, 0.0005
    while time.monotonic() < deadline:
        try:
            if (freezer / "freezer.state").read_text().strip() == "FROZEN":
                return True
        except OSError:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    return False


def _write(path: Path, text: str) -> bool:
    try:
        path.write_text(text)
    except OSError:
        return False
    return True


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        return
