"""``apply``: run a role's whole sandbox on the calling process, step by step, timed,
failing closed, in the order of ARCHITECTURE.md section 5 with seccomp last."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bitcoin_supervisor.interfaces import SandboxError
from bitcoin_supervisor.log import get_logger

from ._caps import drop_privileges, last_cap, set_hostname, set_no_new_privs, set_rlimits
from ._cgroup_join import join_cgroup_fds
from ._landlock import abi_version as landlock_abi
from ._landlock import plan as landlock_plan
from ._landlock import restrict_self
from ._lifetime import bind_to_parent
from ._mounts import pivot_into, stage_view
from ._namespaces import (
    close_fds,
    drop_to_outer_user,
    fork_into_pid_namespace,
    unshare_namespaces,
)
from ._policy import Policy, SeccompRules
from ._seccomp import SeccompFilter, build_filter

__all__ = ["SandboxContext", "apply"]


@dataclass(frozen=True)
class SandboxContext:
    """Per-process facts ``apply`` needs besides the policy.

    ``ipc_fd`` is the inherited IPC socket (it survives); ``pass_fds`` are further fds
    to keep open (besides the policy's ``[fds] keep``); ``name`` is the component's name,
    which names its cgroup (empty: the policy's role); ``parent_pid`` is the process that
    planned the launch (the lifetime binding checks it is still the parent); ``waiter``
    the filter rules of the pid-namespace waiter (None: read from syscalls.toml now).
    """

    ipc_fd: int | None
    pass_fds: tuple[int, ...] = ()
    name: str = ""
    parent_pid: int | None = None
    waiter: SeccompRules | None = None
    # The supervisor-owned cgroup's cgroup.procs fds (None: a self-contained caller, such
    # as the probe matrix, that creates and joins its own cgroup from the policy).
    cgroup_fds: tuple[int, ...] | None = None
    # The role's and the waiter's filters, compiled beforehand (a fork server compiles
    # them once per policy, before forking); None: compiled here.
    filters: tuple[SeccompFilter, SeccompFilter | None] | None = None


class _Timer:
    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.steps[name] = (time.perf_counter() - start) * 1000


def apply(policy: Policy, context: SandboxContext) -> dict[str, float]:
    """Sandbox the calling process under ``policy`` and return each step's milliseconds.

    Call after every heavy import and before creating the event loop; single-threaded
    callers only (fork and unshare need it). With a pid namespace the process forks:
    this call returns in the child (PID 1 inside), while the original process stays
    behind as a signal-forwarding waiter and never returns. Irreversible. Raises
    SandboxError at the first step that fails (the caller must exit: fail closed).
    As root the role runs as the policy's outer uid/gid; unprivileged, it relies on
    user namespaces. With a ``[cgroup]`` section, the calling process (so the waiter and
    the role forked from it) first joins ``bitcoin-supervisor/<name>-<pid>.<pid namespace>``.
    """
    timer = _Timer()
    last_cap()  # read /proc/sys now: the view's proc shows processes only
    names = policy.namespaces
    root = os.geteuid() == 0
    if root and policy.uid is None:
        raise SandboxError(f"policy {policy.source} has no [user] uid: refusing to run "
                           f"role {policy.role!r} as root")
    # Plan before apply: both filters are compiled before the first irreversible step.
    if context.filters is not None:
        flt, waiter_filter = context.filters
        if "pid" in names and waiter_filter is None:
            raise SandboxError("a pid namespace needs the waiter's filter")
    else:
        with timer.step("seccomp_build"):
            flt = build_filter(policy.seccomp)
            waiter_filter = (build_filter(context.waiter or _waiter_rules())
                             if "pid" in names else None)
    with timer.step("pdeathsig"):
        bind_to_parent(context.parent_pid)
    # Joined first, while still root: unshare(CGROUP) later roots the role's cgroup
    # namespace at this cgroup, and every process forked from here on is inside it.
    if context.cgroup_fds is not None:
        with timer.step("cgroup"):
            join_cgroup_fds(context.cgroup_fds)
    elif policy.cgroup is not None:
        from ._cgroups import join_cgroups  # the probe matrix only: not a spawn's cost

        with timer.step("cgroup"):
            join_cgroups(policy.cgroup, context.name or policy.role, policy.source)
    if root:
        with timer.step("chown_datadir"):
            _chown_tree(policy.filesystem.read_write, policy.uid, policy.gid)
    if "mount" in names and root:
        with timer.step("mount_view"):
            unshare_namespaces(["mount"])
            stage_view(policy.filesystem)
        with timer.step("drop_uid"):
            drop_to_outer_user(policy.uid or 0, policy.gid or policy.uid or 0)
            # The kernel clears the parent-death signal on a uid change: bound again, or
            # this process (the waiter of its PID 1) outlives a SIGKILLed supervisor
            # until its role notices the broken link and ends by itself (seconds).
            bind_to_parent(context.parent_pid)
    with timer.step("unshare"):
        unshare_namespaces(names)
    if "mount" in names and not root:
        with timer.step("mount_view"):
            stage_view(policy.filesystem)
    keep = set(policy.keep_fds) | set(context.pass_fds)
    if context.ipc_fd is not None:
        keep.add(context.ipc_fd)
    if "pid" in names and waiter_filter is not None:
        confine_waiter = waiter_filter
        with timer.step("fork"):
            fork_into_pid_namespace(keep, lambda: _confine_waiter(confine_waiter))
    with timer.step("close_fds"):
        close_fds(keep)
    _confine(policy, timer, flt)
    get_logger().info("sandbox.applied", role=policy.role, pid=os.getpid(),
                      steps_ms={k: round(v, 3) for k, v in timer.steps.items()})
    return timer.steps


def _waiter_rules() -> SeccompRules:
    """The waiter's rules from syscalls.toml, for callers that did not plan them (the
    loader is imported here only: a planned launch never needs it)."""
    from ._loader import waiter_rules

    return waiter_rules()


def _confine(policy: Policy, timer: _Timer, flt: SeccompFilter) -> None:
    """Steps 6-9 of section 5, inside the namespaces."""
    if "mount" in policy.namespaces:
        with timer.step("pivot_root"):
            pivot_into(policy.filesystem)
    if policy.hostname and "uts" in policy.namespaces:
        with timer.step("hostname"):
            set_hostname(policy.hostname)
    with timer.step("rlimits"):
        set_rlimits(policy.rlimits)
    with timer.step("no_new_privs"):
        # Before Landlock: restrict_self needs it unless CAP_SYS_ADMIN is held.
        set_no_new_privs()
    if policy.landlock.enabled and _landlock_usable(policy):
        with timer.step("landlock"):
            restrict_self(landlock_plan(policy.filesystem, policy.landlock))
    with timer.step("capabilities"):
        drop_privileges(policy.capabilities, mdwe=policy.mdwe)
    with timer.step("seccomp_load"):
        flt.load()


def _landlock_usable(policy: Policy) -> bool:
    """False only when Landlock is missing and the policy marks it optional; a missing
    Landlock that is not optional raises SandboxError (fail closed)."""
    try:
        landlock_abi()
    except SandboxError as exc:
        if not policy.landlock.optional:
            raise
        get_logger().warning("sandbox.layer_skipped", layer="landlock", error=str(exc))
        return False
    return True


def _confine_waiter(waiter_filter: SeccompFilter) -> None:
    """Lock down the process left outside the pid namespace: it only waits and forwards
    signals, yet it is the pid the supervisor and operators see."""
    set_no_new_privs()
    drop_privileges((), mdwe=True)
    waiter_filter.load()


def _chown_tree(roots: tuple[Path, ...], uid: int | None, gid: int | None) -> None:
    """Hand the writable binds to the role's outer uid while still root."""
    if uid is None:
        return
    owner_gid = gid if gid is not None else uid
    try:
        for root in roots:
            if not root.exists():
                continue
            os.lchown(root, uid, owner_gid)
            for top, dirs, files in os.walk(root):
                for name in dirs + files:
                    os.lchown(os.path.join(top, name), uid, owner_gid)
    except OSError as exc:
        raise SandboxError(f"handing {exc.filename} to uid {uid}: {exc.strerror}") from exc
