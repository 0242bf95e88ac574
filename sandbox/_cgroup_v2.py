"""Pure cgroup v2: the supervisor moves itself into a leaf of its own cgroup, so that its
cgroup may enable memory and pids for the component cgroups created beside that leaf
(v2 lets a cgroup hand controllers to children only while it holds no processes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bitcoin_supervisor.interfaces import SandboxError
from bitcoin_supervisor.log import get_logger

from ._cgroupfs import (
    CONTROLLERS,
    SUPERVISOR_LEAF,
    available,
    enable,
    procs,
    v1_dir,
    v2_own,
)

__all__ = ["prepare_supervisor_cgroup"]

# Processes forked while the supervisor's cgroup is being emptied land in it again.
_MOVE_ROUNDS = 5


def prepare_supervisor_cgroup(controllers: Sequence[str] = CONTROLLERS) -> Path | None:
    """On a host whose ``controllers`` live in cgroup v2, move every process of the
    caller's cgroup into its leaf ``<own>/supervisor`` and enable ``controllers`` in
    ``<own>/cgroup.subtree_control``; component cgroups then go in ``<own>``.

    Returns ``<own>``, or None when there is nothing to prepare: no cgroup2 hierarchy, or
    the controllers are served by cgroup v1 (v1 or hybrid host; logs
    ``cgroup.supervisor_unchanged``). Idempotent: a second call finds the caller in the
    leaf already. Controllers ``<own>`` does not offer are left out and named in the
    ``cgroup.supervisor_prepared`` event (``create_cgroup`` refuses limits needing them).
    Raises SandboxError (one line) when the caller may not move or enable (not root, no
    delegated cgroup). Blocks only on cgroupfs writes.
    """
    log = get_logger()
    own = v2_own()
    if own is None:
        log.info("cgroup.supervisor_unchanged", reason="no cgroup2 hierarchy mounted")
        return None
    in_v1 = [c for c in CONTROLLERS if v1_dir(c) is not None]
    if in_v1:
        log.info("cgroup.supervisor_unchanged",
                 reason=f"cgroup v1 serves {', '.join(in_v1)} (v1 or hybrid host)")
        return None
    base, leaf = (own.parent, own) if own.name == SUPERVISOR_LEAF else (own, own / SUPERVISOR_LEAF)
    offered = available(base)
    try:
        moved = _empty_into(base, leaf)
        for controller in controllers:
            if controller in offered:
                enable(base, controller)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise SandboxError(
            f"cannot prepare the supervisor's cgroup {base}: {where}{exc.strerror}; run it "
            f"as root or in a cgroup delegated to its user (systemd: Delegate=yes)") from exc
    log.info("cgroup.supervisor_prepared", base=str(base), leaf=str(leaf), moved=moved,
             enabled=[c for c in controllers if c in offered],
             unavailable=[c for c in controllers if c not in offered])
    return base


def _empty_into(base: Path, leaf: Path) -> int:
    """Move every process of ``base`` into ``leaf`` (created if needed); return how many.

    The real root cgroup (it has no ``cgroup.type``) may keep its processes, kernel
    threads among them, and still hand out controllers: nothing is moved there.
    """
    if not (base / "cgroup.type").exists():
        return 0
    leaf.mkdir(exist_ok=True)
    moved = 0
    for _ in range(_MOVE_ROUNDS):
        pids = procs(base)
        if not pids:
            break
        for pid in pids:
            try:
                (leaf / "cgroup.procs").write_text(str(pid))
            except ProcessLookupError:
                continue  # exited meanwhile
            moved += 1
    return moved
