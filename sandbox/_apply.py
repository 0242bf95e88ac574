"""The child-side entry into the sandbox: every step a component runs before it serves."""

from __future__ import annotations

import time
from pathlib import Path

from bitcoin_supervisor.interfaces import ComponentSettings
from bitcoin_supervisor.log import get_logger

from ._lifetime import bind_to_parent
from ._loader import load_policy
from ._policy import Policy
from ._steps import SandboxContext, apply


def prepare_child(settings: ComponentSettings, ipc_fd: int | None = None) -> dict[str, float]:
    """Run the sandbox steps for this component, in order, and return per-step durations.

    Called after heavy imports and before the event loop and the IPC server exist
    (ARCHITECTURE.md section 5), single-threaded. With a policy (``settings.sandbox``)
    the whole policy is applied and, because of the pid namespace, the process forks:
    this returns in the sandboxed child while the original process waits and mirrors
    its exit. Without one, only the lifetime binding (PR_SET_PDEATHSIG) is done.
    Raises SandboxError or PolicyError and the caller exits: fail closed.
    """
    if settings.sandbox is None:
        start = time.perf_counter()
        bind_to_parent()
        steps = {"pdeathsig": (time.perf_counter() - start) * 1000}
        get_logger().warning("sandbox.disabled", role=settings.role,
                             steps_ms={k: round(v, 3) for k, v in steps.items()})
        return steps
    policy = policy_for(settings)
    assert policy is not None
    Path(settings.datadir).mkdir(parents=True, exist_ok=True, mode=0o700)
    return apply(policy, SandboxContext(ipc_fd=ipc_fd, name=settings.name))


def policy_for(settings: ComponentSettings) -> Policy | None:
    """Resolve the policy a component runs under (None when it runs unsandboxed).

    The supervisor calls this to validate before spawning anything; the component calls
    it again to apply the same policy. Pure. Raises PolicyError with file:line.
    """
    if settings.sandbox is None:
        return None
    datadirs = {name: Path(path) for name, path in settings.datadirs.items()}
    datadirs[settings.name] = Path(settings.datadir)
    return load_policy(settings.sandbox, name=settings.name, datadirs=datadirs,
                       providers=settings.providers, options=settings.options)
