"""Check from ``/proc`` that a launched component really is confined as planned.

What ``status`` reports is what was verified, not what was configured: the supervisor
reads the innermost process of the component (PID 1 of its pid namespace, found through
``NSpid``) and the waiter it started, and compares them with the policy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._policy import Policy

__all__ = ["Confinement", "verify_confinement"]

_PROC = Path("/proc")


@dataclass(frozen=True)
class Confinement:
    """What was observed of one component's processes.

    ``state`` is ``"enforced"`` (every check held), ``"violated"`` (``problems`` says
    what did not) or ``"none"`` (no policy: nothing was expected). ``facts`` are the
    observed values of the innermost process (pid, uid, seccomp mode, no_new_privs,
    capability sets, own network namespace).
    """

    state: str
    facts: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``enforced (verified)``, ``VIOLATED: ...`` or ``none``, for humans."""
        if self.state == "enforced":
            return "enforced (verified)"
        if self.state == "violated":
            return "VIOLATED: " + "; ".join(self.problems)
        return "none"

    def to_json(self) -> dict[str, Any]:
        """The ``confinement`` object of ``status --json``."""
        return {"state": self.state, "label": self.label, "facts": self.facts,
                "problems": list(self.problems)}


def _status(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(_PROC / str(pid) / "status", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(_PROC / str(pid) / "task"):
            text = (_PROC / str(pid) / "task" / task / "children").read_text()
            out += [int(c) for c in text.split()]
    except OSError:
        pass
    return out


def innermost(pid: int) -> int:
    """The process of ``pid``'s tree that is PID 1 of the deepest pid namespace below it
    (``pid`` itself when it has no namespace of its own). Reads /proc; never raises."""
    best, depth = pid, 0
    queue: list[int] = [pid]
    seen: set[int] = set()
    while queue and len(seen) < 64:
        current = queue.pop(0)
        if current in seen:
            continue
        seen.add(current)
        try:
            nspid = _status(current).get("NSpid", "").split()
        except OSError:
            continue
        if len(nspid) > depth + 1 and nspid[-1] == "1":
            best, depth = current, len(nspid) - 1
        queue += _children(current)
    return best


def _check(pid: int, status: dict[str, str], expect_uid: int | None) -> list[str]:
    problems = []
    if status.get("Seccomp") != "2":
        problems.append(f"pid {pid}: Seccomp {status.get('Seccomp')} (want 2: filter)")
    if status.get("NoNewPrivs") != "1":
        problems.append(f"pid {pid}: NoNewPrivs {status.get('NoNewPrivs')} (want 1)")
    for key in ("CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"):
        if int(status.get(key, "1"), 16) != 0:
            problems.append(f"pid {pid}: {key} {status.get(key)} (want none)")
    if expect_uid is not None:
        uids = {int(u) for u in status.get("Uid", "").split()}
        if uids != {expect_uid}:
            problems.append(f"pid {pid}: uids {sorted(uids)} (want {expect_uid})")
    return problems


def verify_confinement(pid: int, policy: Policy | None) -> Confinement:
    """Compare the processes of the component launched as ``pid`` with ``policy``.

    Checks the launched process (the pid-namespace waiter, which the supervisor and
    operators see) and the innermost one: seccomp in filter mode, no_new_privs, every
    capability set empty, the policy's outer uid (as root; the supervisor's own uid when
    unprivileged), and for ``network = "none"`` a network namespace other than the
    supervisor's. Blocking /proc reads (call from an executor). Never raises: a process
    that vanished meanwhile is a problem reported in the result.
    """
    if policy is None:
        return Confinement("none")
    expect_uid = policy.uid if os.geteuid() == 0 else os.geteuid()
    inner = innermost(pid)
    problems: list[str] = []
    facts: dict[str, Any] = {"pid": inner}
    try:
        status = _status(inner)
        problems += _check(inner, status, expect_uid)
        if inner != pid:
            problems += _check(pid, _status(pid), None)
        elif "pid" in policy.namespaces:
            problems.append(f"pid {pid}: no pid namespace of its own")
        own_net = os.readlink(_PROC / str(inner) / "ns" / "net")
        host_net = os.readlink("/proc/self/ns/net")
    except OSError as exc:
        return Confinement("violated", facts, (f"cannot read /proc of pid {inner}: "
                                               f"{exc.strerror} (did it exit?)",))
    if policy.network == "none" and own_net == host_net:
        problems.append(f"pid {inner}: shares the supervisor's network namespace")
    facts.update(uid=int(status.get("Uid", "-1").split()[0]), seccomp=status.get("Seccomp"),
                 no_new_privs=status.get("NoNewPrivs") == "1",
                 capabilities=status.get("CapEff"), own_network=own_net != host_net)
    return Confinement("violated" if problems else "enforced", facts, tuple(problems))
