"""Jobs: what was asked of a component, kept apart from its state (systemd's job/state split).

A component has at most one pending job. A new request is merged into it here, in one
table, instead of in flags scattered over the component: a stop replaces a start that has
not begun (and wakes its waiter), a start after a pending stop makes a restart, and the
same request twice is one job. Pure: waiters are opaque objects the caller resolves.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ._state import ExitReason

__all__ = ["Job", "JobKind", "merge"]


class JobKind(enum.Enum):
    """What was asked: the values are the control verbs."""

    START = "start"
    STOP = "stop"
    RESTART = "restart"


@dataclass(eq=False)
class Job:
    """One pending request. ``waiters`` are resolved when it has been carried out (a start
    or restart: running, failed or superseded; a stop: down). ``stop_waiters`` belong to
    a stop merged into a restart: resolved once its stop part is done. ``reason`` is what
    a stop is for (the user, or the daemon's shutdown)."""

    kind: JobKind
    waiters: list[object] = field(default_factory=list)
    stop_waiters: list[object] = field(default_factory=list)
    reason: ExitReason = ExitReason.STOPPED_BY_USER


def merge(pending: Job | None, new: Job) -> tuple[Job, list[object]]:
    """Merge ``new`` into the ``pending`` job; return the job now pending and the waiters
    whose request was superseded (the caller resolves them now). Never raises."""
    if pending is None:
        return new, []
    kinds = (pending.kind, new.kind)
    start, stop, restart = JobKind.START, JobKind.STOP, JobKind.RESTART
    if pending.kind is new.kind:
        reason = new.reason if new.reason is ExitReason.SHUTDOWN else pending.reason
        return Job(pending.kind, pending.waiters + new.waiters,
                   pending.stop_waiters + new.stop_waiters, reason), []
    if new.kind is stop:
        # A stop wins over any start not begun; that start's callers learn it now.
        return Job(stop, pending.stop_waiters + new.waiters, [], new.reason), pending.waiters
    if kinds == (stop, start) or kinds == (stop, restart):
        return Job(restart, new.waiters, pending.waiters + new.stop_waiters), []
    # (start, restart) or (restart, start): one restart serves both.
    return Job(restart, pending.waiters + new.waiters,
               pending.stop_waiters + new.stop_waiters), []
