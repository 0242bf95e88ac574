"""The child-side entry into the sandbox: every step a component runs before it serves."""

from __future__ import annotations

import time

from bitcoin_supervisor.interfaces import ComponentSettings
from bitcoin_supervisor.log import get_logger

from ._lifetime import bind_to_parent


def prepare_child(settings: ComponentSettings) -> dict[str, float]:
    """Run the sandbox steps for this component, in order, and return per-step durations.

    Called after heavy imports and before the event loop and the IPC server exist
    (ARCHITECTURE.md section 5). Today the only step is the lifetime binding; the
    per-role policy steps (namespaces, mounts, Landlock, capabilities, seccomp last)
    slot in here. Raises SandboxError and the caller exits: fail closed.
    """
    steps: dict[str, float] = {}
    start = time.perf_counter()
    bind_to_parent()
    steps["pdeathsig"] = (time.perf_counter() - start) * 1000
    get_logger().info(
        "sandbox.applied", role=settings.role, steps_ms={k: round(v, 3) for k, v in steps.items()}
    )
    return steps
