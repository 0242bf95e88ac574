"""Tie a component's lifetime to its supervisor (the first sandbox step, via prctl)."""

from __future__ import annotations

import os
import signal

import prctl

from bitcoin_supervisor.interfaces import SandboxError

PARENT_PID_ENV = "BITCOIN_SUPERVISOR_PID"


def bind_to_parent(environ: dict[str, str] | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent (the supervisor) dies.

    The supervisor may already have died between fork and this call; the pid it wrote
    into the environment tells. Raises SandboxError when the parent is already gone.
    """
    env = os.environ if environ is None else environ
    prctl.set_pdeathsig(signal.SIGKILL)
    expected = env.get(PARENT_PID_ENV)
    if expected is not None and os.getppid() != int(expected):
        raise SandboxError(f"supervisor (pid {expected}) exited before this component started")
