"""Applying a role's sandbox to a process about to serve; only importer of prctl/seccomp."""

from ._apply import policy_for, prepare_child
from ._landlock import abi_version as landlock_abi_version
from ._lifetime import PARENT_PID_ENV, bind_to_parent
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
from ._violations import find_violation

__all__ = [
    "PARENT_PID_ENV",
    "POLICY_DIR",
    "ArgCompare",
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
    "policy_for",
    "prepare_child",
]

# One-shot confinement of any command (``sandbox run``) and the per-role probe matrix.
from ._probes import MATRIX, OK, SIGSYS, Probe, ProbeResult, run_probe_matrix  # noqa: E402
from ._run import (  # noqa: E402
    EXIT_CANNOT_EXECUTE,
    EXIT_NOT_FOUND,
    EXIT_SANDBOX_FAILED,
    RunOutcome,
    allow_entry_execve,
    exec_chain,
    resolve_command,
    run_sandboxed,
)

__all__ += [
    "EXIT_CANNOT_EXECUTE",
    "EXIT_NOT_FOUND",
    "EXIT_SANDBOX_FAILED",
    "MATRIX",
    "OK",
    "Probe",
    "ProbeResult",
    "RunOutcome",
    "SIGSYS",
    "allow_entry_execve",
    "exec_chain",
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

__all__ += [
    "CGROUP_PARENT",
    "CgroupLimits",
    "ComponentCgroup",
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
