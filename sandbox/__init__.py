"""Applying a role's sandbox to a process about to serve; only importer of prctl/seccomp."""

from ._apply import prepare_child
from ._lifetime import PARENT_PID_ENV, bind_to_parent

__all__ = ["PARENT_PID_ENV", "bind_to_parent", "prepare_child"]
