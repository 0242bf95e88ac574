"""Applying a role's sandbox to a process about to run; only importer of prctl/seccomp."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Every process starts as ``python -m bitcoin_supervisor.sandbox``, which imports this
# package first: importing all of it eagerly cost ~100 ms per spawn (policy loader, probe
# matrix, pyseccomp). Names are resolved from their module on first use (PEP 562); the
# TYPE_CHECKING block gives mypy and readers the same names statically.
_EXPORTS: dict[str, str] = {
    "POLICIES": "_templates", "PROGRAM_POLICIES": "_templates",
    # Per-component disk budgets: a loop-mounted ext4 image on each datadir.
    "DiskBudget": "_disk", "DiskImage": "_disk", "DiskUsage": "_disk",
    "format_size": "_disk", "loop_support_problem": "_disk",
    "policy_for": "_apply", "trampoline_argv": "_apply",
    "bind_to_parent": "_lifetime",
    "POLICY_DIR": "_loader", "load_policy": "_loader", "dangerous_syscalls": "_loader",
    "unjustified_syscalls": "_loader",
    "ArgCompare": "_policy", "FilesystemView": "_policy", "LandlockRules": "_policy",
    "Policy": "_policy", "SeccompRules": "_policy", "SyscallRule": "_policy",
    "CgroupLimits": "_policy",
    "SeccompFilter": "_seccomp", "build_filter": "_seccomp",
    "SandboxContext": "_steps", "apply": "_steps",
    "Confinement": "_verify", "verify_confinement": "_verify",
    "find_violation": "_violations", "pids_are_host_pids": "_violations",
    "unnamed_reason": "_violations",
    "LaunchPlan": "_plan", "allow_entry_execve": "_plan", "exec_chain": "_plan",
    "make_plan": "_plan", "plan_fd": "_plan",
    "MATRIX": "_probes", "OK": "_probes", "SIGSYS": "_probes", "Probe": "_probes",
    "ProbeResult": "_probes", "run_probe_matrix": "_probes",
    "RunOutcome": "_run", "resolve_command": "_run", "run_sandboxed": "_run",
    "EXIT_CANNOT_EXECUTE": "_trampoline", "EXIT_NOT_FOUND": "_trampoline",
    "EXIT_SANDBOX_FAILED": "_trampoline",
    "ComponentCgroup": "_cgroup_owner", "create_cgroup": "_cgroup_owner",
    "join_cgroup_fds": "_cgroup_owner",
    "prepare_supervisor_cgroup": "_cgroup_v2",
    "CGROUP_PARENT": "_cgroups", "cgroup_dirs": "_cgroups", "cgroup_summary": "_cgroups",
    "cgroup_usage": "_cgroups", "remove_cgroups": "_cgroups",
    "fork_server_argv": "_forkwire", "TEMPLATE_CAPABILITIES": "_forkserver",
}
_ALIASES = {"landlock_abi_version": ("_landlock", "abi_version")}

__all__ = [
    "POLICIES",
    "PROGRAM_POLICIES",
    "DiskBudget",
    "DiskImage",
    "DiskUsage",
    "format_size",
    "loop_support_problem",
    "ArgCompare",
    "CGROUP_PARENT",
    "CgroupLimits",
    "ComponentCgroup",
    "Confinement",
    "EXIT_CANNOT_EXECUTE",
    "EXIT_NOT_FOUND",
    "EXIT_SANDBOX_FAILED",
    "FilesystemView",
    "LandlockRules",
    "LaunchPlan",
    "MATRIX",
    "OK",
    "POLICY_DIR",
    "Policy",
    "Probe",
    "ProbeResult",
    "RunOutcome",
    "SIGSYS",
    "SandboxContext",
    "SeccompFilter",
    "SeccompRules",
    "SyscallRule",
    "TEMPLATE_CAPABILITIES",
    "allow_entry_execve",
    "apply",
    "bind_to_parent",
    "build_filter",
    "cgroup_dirs",
    "cgroup_summary",
    "cgroup_usage",
    "create_cgroup",
    "dangerous_syscalls",
    "exec_chain",
    "find_violation",
    "fork_server_argv",
    "fork_wire",
    "join_cgroup_fds",
    "landlock_abi_version",
    "load_policy",
    "make_plan",
    "pids_are_host_pids",
    "plan_fd",
    "policy_for",
    "prepare_supervisor_cgroup",
    "remove_cgroups",
    "resolve_command",
    "run_probe_matrix",
    "run_sandboxed",
    "trampoline_argv",
    "unjustified_syscalls",
    "unnamed_reason",
    "verify_confinement",
]


def __getattr__(name: str) -> Any:
    if name == "fork_wire":  # the fork server's control messages, a module of its own
        value: Any = importlib.import_module(f"{__name__}._forkwire")
        globals()[name] = value
        return value
    if name in _EXPORTS:
        module, attr = _EXPORTS[name], name
    elif name in _ALIASES:
        module, attr = _ALIASES[name]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from . import _forkwire as fork_wire
    from ._apply import policy_for, trampoline_argv
    from ._cgroup_owner import ComponentCgroup, create_cgroup, join_cgroup_fds
    from ._cgroup_v2 import prepare_supervisor_cgroup
    from ._cgroups import (
        CGROUP_PARENT,
        cgroup_dirs,
        cgroup_summary,
        cgroup_usage,
        remove_cgroups,
    )
    from ._disk import DiskBudget, DiskImage, DiskUsage, format_size, loop_support_problem
    from ._forkserver import TEMPLATE_CAPABILITIES
    from ._forkwire import fork_server_argv
    from ._landlock import abi_version as landlock_abi_version
    from ._lifetime import bind_to_parent
    from ._loader import POLICY_DIR, dangerous_syscalls, load_policy, unjustified_syscalls
    from ._plan import LaunchPlan, allow_entry_execve, exec_chain, make_plan, plan_fd
    from ._policy import (
        ArgCompare,
        CgroupLimits,
        FilesystemView,
        LandlockRules,
        Policy,
        SeccompRules,
        SyscallRule,
    )
    from ._probes import MATRIX, OK, SIGSYS, Probe, ProbeResult, run_probe_matrix
    from ._run import RunOutcome, resolve_command, run_sandboxed
    from ._seccomp import SeccompFilter, build_filter
    from ._steps import SandboxContext, apply
    from ._templates import POLICIES, PROGRAM_POLICIES
    from ._trampoline import EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, EXIT_SANDBOX_FAILED
    from ._verify import Confinement, verify_confinement
    from ._violations import find_violation, pids_are_host_pids, unnamed_reason
