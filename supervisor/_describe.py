"""How the daemon describes a component: status records, systemd's STATUS= word, probes."""

from __future__ import annotations

import os
from typing import Any

from bitcoin_supervisor.interfaces import SandboxError
from bitcoin_supervisor.sandbox import cgroup_summary, landlock_abi_version

from ._component import Component, ComponentSnapshot
from ._state import ComponentState, public_state
from .control_protocol import (
    ComponentStatus,
    Confinement,
    HealthSummary,
    LastExit,
    SandboxSummary,
    SyncProgress,
)

__all__ = ["cgroup_probe", "describe", "landlock_abi", "status_word"]


def landlock_abi() -> int | None:
    """The kernel's Landlock ABI for status; None where Landlock is absent (the sandbox
    step itself then fails closed with a clear message)."""
    try:
        return landlock_abi_version()
    except SandboxError:
        return None


def describe(c: Component, cgroup: dict[str, Any] | None, landlock_abi: int | None,
             sync: SyncProgress | None = None) -> ComponentStatus:
    """What status shows of ``c``: one frozen snapshot, the cgroup probe's result and
    the consumer's sync progress. Never blocks."""
    snap = c.snapshot()  # one frozen read: status never sees a half-made transition
    substate, reason = snap.state.value, snap.reason.value
    if snap.degraded is not None:  # running, but what it needs is not
        substate, reason = ("waiting" if snap.waiting else "degraded"), "dependency"
    return ComponentStatus(
        name=snap.name, role=snap.role, state=public_state(snap.state).value,
        substate=substate, reason=reason, pid=snap.pid, degraded=snap.degraded,
        sync=sync,
        restarts=snap.restarts,
        uptime_s=round(snap.uptime_s, 3) if snap.uptime_s is not None else None,
        since=snap.since,
        last_exit=LastExit.from_json(snap.last_exit.to_json()) if snap.last_exit else None,
        datadir=str(snap.datadir), sandbox=_sandbox_summary(snap, cgroup, landlock_abi),
        health=None if snap.health is None else HealthSummary(
            check=snap.health[0], passed=snap.health[1],
            last_ok_age_s=None if snap.health[2] is None else round(snap.health[2], 3)),
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
