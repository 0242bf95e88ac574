"""How the daemon describes a component: status records, systemd's STATUS= word, probes."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from bitcoin_supervisor.interfaces import SandboxError
from bitcoin_supervisor.sandbox import (
    DiskUsage,
    cgroup_summary,
    landlock_abi_version,
    loop_support_problem,
)

from ._component import Component, ComponentSnapshot
from ._state import ComponentState, ExitReason, public_state
from .control_protocol import (
    CapabilityLink,
    ComponentStatus,
    Confinement,
    DiskStatus,
    HealthSummary,
    LastExit,
    SandboxSummary,
    StandbyStatus,
    SyncProgress,
)

__all__ = ["Probe", "cgroup_probe", "describe", "disk_status", "landlock_abi", "probe",
           "refusal", "status_word"]

# What the blocking part of status read about one component: its cgroup, its disk, its
# standby's memory.
Probe = tuple[dict[str, Any] | None, DiskStatus, int | None]


def landlock_abi() -> int | None:
    """The kernel's Landlock ABI for status; None where Landlock is absent (the sandbox
    step itself then fails closed with a clear message)."""
    try:
        return landlock_abi_version()
    except SandboxError:
        return None


def describe(c: Component, probed: Probe, landlock_abi: int | None,
             sync: SyncProgress | None = None,
             links: tuple[CapabilityLink, ...] = ()) -> ComponentStatus:
    """What status shows of ``c``: one frozen snapshot, the probe's result (cgroup and
    disk), the consumer's sync progress and how its capabilities reach it. Never blocks."""
    cgroup, disk, standby_memory = probed
    snap = c.snapshot()  # one frozen read: status never sees a half-made transition
    substate, reason = snap.state.value, snap.reason.value
    if snap.degraded is not None:  # running, but what it needs is not
        substate, reason = ("waiting" if snap.waiting else "degraded"), "dependency"
    return ComponentStatus(
        name=snap.name, role=snap.role, state=public_state(snap.state).value,
        substate=substate, reason=reason, pid=snap.pid, degraded=snap.degraded,
        sync=sync, links=links,
        restarts=snap.restarts,
        uptime_s=round(snap.uptime_s, 3) if snap.uptime_s is not None else None,
        since=snap.since,
        last_exit=LastExit.from_json(snap.last_exit.to_json()) if snap.last_exit else None,
        datadir=str(snap.datadir), sandbox=_sandbox_summary(snap, cgroup, landlock_abi),
        disk=disk, disk_full=disk.full,
        health=None if snap.health is None else HealthSummary(
            check=snap.health[0], passed=snap.health[1],
            last_ok_age_s=None if snap.health[2] is None else round(snap.health[2], 3)),
        standby=None if snap.standby is None else StandbyStatus(
            pid=snap.standby[0], ready=snap.standby[1], memory_bytes=standby_memory),
        **_confinement(snap))


def _sandbox_summary(snap: ComponentSnapshot, cgroup: dict[str, Any] | None,
                     landlock_abi: int | None) -> SandboxSummary | None:
    if snap.policy is None or cgroup is None:
        return None
    summary: dict[str, Any] = {**snap.policy.summary(),
                               "landlock_abi": landlock_abi, "cgroup": cgroup}
    if os.geteuid() != 0:
        summary["uid"] = None  # the policy's outer uid applies only under root
    # The sandbox package reports plain dicts; reading them through the protocol's
    # record makes a drifted key fail here, loudly, not in every CLI.
    return SandboxSummary.from_json(summary)


def status_word(c: Component) -> str:
    """One component in systemd's STATUS=: "node failed (start-limit-hit)", "wallet
    degraded (node failed (start-limit-hit))", "index active"."""
    down = c.dependency_down()
    if down is not None:
        return f"{c.name} {'waiting' if down[1] else 'degraded'} ({down[0]})"
    return (f"{c.name} {public_state(c.state).value}"
            + (f" ({c.machine.reason.value})" if c.state is ComponentState.FAILED else ""))


def probe(c: Component) -> Probe:
    """The blocking part of c's status: cgroup and disk (an executor job). Never
    raises."""
    standby = c.standby_usage() if c.config.standby else None
    return cgroup_probe(c), disk_status(c), (standby or {}).get("memory_bytes")


def disk_status(c: Component) -> DiskStatus:
    """c's disk budget and usage, or why it has none. Blocking statvfs and /proc reads
    (an executor job). Never raises."""
    budget = c.config.disk
    if budget is None:
        return DiskStatus(enforced=False, note='disk_budget = "none"')
    usage: DiskUsage | None = c.disk_usage()
    if usage is None:
        problem = loop_support_problem()
        return DiskStatus(enforced=False, budget_bytes=budget.bytes,
                          budget_inodes=budget.inodes,
                          note=f"no budget: {problem}" if problem else "not mounted")
    return DiskStatus(enforced=True, budget_bytes=budget.bytes,
                      size_bytes=usage.budget_bytes, used_bytes=usage.used_bytes,
                      budget_inodes=usage.budget_inodes, used_inodes=usage.used_inodes,
                      full=usage.full)


# Failures that end a start for good, with no restart to wait for: the settings, the
# program or its confinement cannot work (or what it depends on is one of those).
_REFUSED = frozenset({ExitReason.BOOT_REFUSED, ExitReason.SPAWN_FAILED,
                      ExitReason.UNCONFINED})


def refusal(components: Iterable[Component]) -> str | None:
    """One line saying why nothing can run, when every component has failed for good
    (refused, or waiting on one that was); None while any may still run. Never blocks."""
    comps = list(components)
    if not comps or any(c.state is not ComponentState.FAILED for c in comps):
        return None
    reasons = {c.machine.reason for c in comps}
    if not reasons & _REFUSED or reasons - _REFUSED - {ExitReason.DEPENDENCY}:
        return None
    parts = []
    for c in comps:
        if c.machine.reason is ExitReason.DEPENDENCY:
            parts.append(f"{c.name} needs {', '.join(c.config.depends_on)}")
            continue
        last = c.last_exit
        detail = last.detail if last is not None and last.detail else None
        parts.append(f"{c.name} {c.machine.reason.value}" + (f": {detail}" if detail else ""))
    return "; ".join(parts)


def cgroup_probe(c: Component) -> dict[str, Any] | None:
    """The cgroup part of c's status: configured limits, what this host offers, usage.
    Blocking /proc and cgroupfs reads (an executor job). Never raises."""
    if c.policy is None:
        return None
    summary = cgroup_summary(c.policy)
    usage = c.usage()
    if usage is not None and c.policy.cgroup is not None:
        summary["usage"] = usage
    return summary


def _confinement(snap: ComponentSnapshot) -> dict[str, Any]:
    """What status may claim: what /proc showed at the last start, never the policy."""
    if snap.policy is None:
        return {"confinement": Confinement.NONE}
    seen = snap.confinement
    if seen is None or snap.pid is None and seen.state != "violated":
        return {"confinement": Confinement.CONFIGURED}
    if seen.state == "violated":
        return {"confinement": Confinement.VIOLATED,
                "confinement_detail": "; ".join(seen.problems)}
    facts = seen.facts
    detail = (f"pid {facts.get('pid')} uid {facts.get('uid')}, seccomp filter, "
              "no_new_privs, no capabilities"
              + (", own network namespace" if facts.get("own_network") else ""))
    return {"confinement": Confinement.ENFORCED, "confinement_detail": detail}
