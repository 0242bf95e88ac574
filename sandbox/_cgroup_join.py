"""The trampoline's side of a supervisor-owned cgroup: join it through inherited fds.

Apart from ``_cgroup_owner`` so that the trampoline does not import the cgroupfs code it
never runs (import time is paid on every spawn).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

from bitcoin_supervisor.interfaces import SandboxError

__all__ = ["join_cgroup_fds"]


def join_cgroup_fds(fds: Sequence[int]) -> None:
    """Trampoline side, first step: move the calling process into each cgroup whose
    ``cgroup.procs`` fd it inherited (from ``ComponentCgroup.join_fds``), closing every fd
    whether or not it worked. Raises SandboxError naming the fd that failed; the caller
    must exit (fail closed). Blocks only on cgroupfs writes."""
    failure: SandboxError | None = None
    for fd in fds:
        try:
            os.write(fd, b"0")
        except OSError as exc:
            failure = failure or SandboxError(f"joining the component's cgroup through "
                                              f"fd {fd} failed: {exc.strerror}")
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
    if failure is not None:
        raise failure
