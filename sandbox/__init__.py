"""Applying a role's sandbox to a process about to run; only importer of prctl/seccomp."""

from ._apply import policy_for, trampoline_argv
from ._landlock import abi_version as landlock_abi_version
from ._lifetime import bind_to_parent
from ._loader import POLICY_DIR, load_policy
from ._policy import (
    ArgCompare,
    FilesystemView,
    LandlockRules,
    Policy,
    SeccompRules,
    SyscallRule,
)
from ._seccomp import SeccompFilter, build_filter
from ._steps import SandboxContext, apply
from ._verify import Confinement, verify_confinement
from ._violations import find_violation, pids_are_host_pids

__all__ = [
    "POLICY_DIR",
    "ArgCompare",
    "Confinement",
    "FilesystemView",
    "LandlockRules",
    "Policy",
    "SandboxContext",
    "SeccompFilter",
    "SeccompRules",
    "SyscallRule",
    "apply",
    "bind_to_parent",
    "build_filter",
    "find_violation",
    "landlock_abi_version",
    "load_policy",
    "pids_are_host_pids",
    "policy_for",
    "trampoline_argv",
    "verify_confinement",
]

# One-shot confinement of any command (``sandbox run``) and the per-role probe matrix.
from ._plan import (  # noqa: E402
    LaunchPlan,
    allow_entry_execve,
    exec_chain,
    make_plan,
    plan_fd,
)
from ._probes import MATRIX, OK, SIGSYS, Probe, ProbeResult, run_probe_matrix  # noqa: E402
from ._run import RunOutcome, resolve_command, run_sandboxed  # noqa: E402
from ._trampoline import EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, EXIT_SANDBOX_FAILED  # noqa: E402

__all__ += [
    "EXIT_CANNOT_EXECUTE",
    "EXIT_NOT_FOUND",
    "EXIT_SANDBOX_FAILED",
    "LaunchPlan",
    "MATRIX",
    "OK",
    "Probe",
    "ProbeResult",
    "RunOutcome",
    "SIGSYS",
    "allow_entry_execve",
    "exec_chain",
    "make_plan",
    "plan_fd",
    "resolve_command",
    "run_probe_matrix",
    "run_sandboxed",
]

# Per-component cgroups ([cgroup] limits; owned by the supervisor) and the
# dangerous-syscall lint.
from ._cgroup_owner import ComponentCgroup, create_cgroup, join_cgroup_fds  # noqa: E402
from ._cgroup_v2 import prepare_supervisor_cgroup  # noqa: E402
from ._cgroups import (  # noqa: E402
    CGROUP_PARENT,
    cgroup_dirs,
    cgroup_summary,
    cgroup_usage,
    remove_cgroups,
)
from ._loader import dangerous_syscalls, unjustified_syscalls  # noqa: E402
from ._policy import CgroupLimits  # noqa: E402
from ._templates import POLICIES, PROGRAM_POLICIES  # noqa: E402

__all__ += [
    "CGROUP_PARENT",
    "CgroupLimits",
    "ComponentCgroup",
    "POLICIES",
    "PROGRAM_POLICIES",
    "cgroup_dirs",
    "cgroup_summary",
    "cgroup_usage",
    "create_cgroup",
    "dangerous_syscalls",
    "join_cgroup_fds",
    "prepare_supervisor_cgroup",
    "remove_cgroups",
    "unjustified_syscalls",
]
