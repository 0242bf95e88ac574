"""Tie a component's lifetime to its supervisor (the first sandbox step, via prctl)."""

from __future__ import annotations

import os
import signal

import prctl

from bitcoin_supervisor.interfaces import SandboxError


def bind_to_parent(expected_parent: int | None = None,
                   signum: signal.Signals = signal.SIGKILL) -> None:
    """Ask the kernel to send ``signum`` (SIGKILL unless told) to this process when its
    parent (the supervisor) dies.

    The parent may already have died between fork and this call: when
    ``expected_parent`` is given (the pid that planned this launch) and the current
    parent differs, raises SandboxError.
    """
    prctl.set_pdeathsig(signum)
    if expected_parent is not None and os.getppid() != expected_parent:
        raise SandboxError(f"supervisor (pid {expected_parent}) exited before this "
                           "component started")
