"""Build the role's filesystem view: a tmpfs root holding only the policy's binds, tmpfs
and device nodes, then pivot_root into it so the host tree is gone."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from bitcoin_supervisor.interfaces import SandboxError

from . import _libc as libc
from ._policy import FilesystemView

__all__ = ["STAGING", "pivot_into", "stage_view"]

# Where the new root is assembled. Bind sources are opened *before* this tmpfs is
# mounted and bound from /proc/self/fd, so a source below it (pytest's /tmp dirs) stays
# reachable.
# The new root is assembled on a tmpfs mounted over /sys in the process's own mount
# namespace: no installation, checkout or datadir can sit below /sys (unlike /tmp, /mnt or
# /run), so the staging mount never hides a file the sandbox still needs. Every bind
# source is opened (pinned) before this tmpfs is mounted anyway, and nothing under /sys is
# read after it: the cgroup was joined and /proc/sys read before.
STAGING = "/sys"
_RO = libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV
_RW = libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV | libc.MOUNT_ATTR_NOEXEC
_DEV = libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NOEXEC


def stage_view(view: FilesystemView) -> None:
    """Assemble the view under STAGING in the current (already private) mount namespace.

    Read-only binds are mounted by depth (parents first, so a later parent cannot hide a
    child), each recursively read-only via mount_setattr; then the writable binds, tmpfs
    and device nodes. A missing non-optional source raises SandboxError.
    """
    try:
        libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
    except OSError as exc:
        raise SandboxError(f"making / private: {exc}") from exc
    # One depth-ordered plan for binds and tmpfs alike: a later mount on a parent (a
    # tmpfs /tmp) would hide an earlier one below it (a datadir in /tmp).
    plan: list[tuple[Path, int | None]] = [(p, None) for p in view.tmpfs]
    plan += [(p, _RO) for p in view.read_only] + [(p, _RW) for p in view.read_write]
    plan.sort(key=lambda item: len(item[0].parts))
    plan += [(p, _DEV) for p in view.devices]
    sources: list[tuple[Path, int | None, int | str | None]] = []
    try:
        for path, attrs in plan:
            source = None if attrs is None else _open_source(path, path in view.optional)
            if attrs is None or source is not None:
                sources.append((path, attrs, source))
        libc.mount("tmpfs", STAGING, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV,
                   "mode=0755,size=1m")
        for path, attrs, source in sources:
            if attrs is None or source is None:
                target = _mkdir(path)
                libc.mount("tmpfs", target, "tmpfs", 0, "mode=1777,size=16m,nr_inodes=4096")
                libc.mount_setattr(target, _RW, recursive=False)
            else:
                _bind(path, attrs, source)
        if view.proc:
            _mkdir(Path("/proc"))
    except OSError as exc:
        raise SandboxError(f"building the filesystem view: {exc}") from exc
    finally:
        for _, _, source in sources:
            if isinstance(source, int):
                os.close(source)


def _open_source(path: Path, optional: bool) -> int | str | None:
    """An O_PATH fd for a bind source, or the symlink target text for a symlink.

    O_NOFOLLOW pins the very inode that was checked: this runs as real root with the
    host tree visible, and another role may own the path (the index binds the node's
    blocks/), so a check-then-open would let it swap in a symlink to any host directory.
    """
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        if optional:
            return None
        raise SandboxError(f"{path} does not exist (the policy binds it)") from exc
    if not stat.S_ISLNK(os.fstat(fd).st_mode):
        return fd
    os.close(fd)
    try:
        # Recreated inside the view, a symlink only points at what the view shows.
        return os.readlink(path)
    except OSError as exc:
        raise SandboxError(f"{path} changed while the view was built") from exc


def _bind(path: Path, attrs: int, source: int | str) -> None:
    staged = STAGING + str(path)
    if isinstance(source, str):
        _mkdir(path.parent)
        if not os.path.lexists(staged):
            os.symlink(source, staged)
        return
    if os.path.isdir(f"/proc/self/fd/{source}"):
        _mkdir(path)
    else:
        _mkdir(path.parent)
        if not os.path.exists(staged):
            os.close(os.open(staged, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    libc.mount(f"/proc/self/fd/{source}", staged, None, libc.MS_BIND | libc.MS_REC)
    libc.mount_setattr(staged, attrs, recursive=True)


def _mkdir(path: Path) -> str:
    staged = STAGING + str(path)
    os.makedirs(staged, mode=0o755, exist_ok=True)
    return staged


def pivot_into(view: FilesystemView) -> None:
    """Mount a fresh /proc (for the current pid namespace) into the staged root, make it
    the root with pivot_root, detach the host tree and make the root tmpfs read-only.

    Runs inside the user and pid namespaces (after the fork). Raises SandboxError.
    """
    try:
        if view.proc:
            # subset=pid: only the (namespaced) processes, none of /proc/sys, mounts
            # or kernel state of the host.
            libc.mount("proc", STAGING + "/proc", "proc",
                       libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC, "subset=pid")
        # Built by real root, the staged tmpfs is a locked mount in this user namespace's
        # copy, and pivot_root refuses a locked new_root (EINVAL): re-bind it as our own.
        libc.mount(STAGING, STAGING, None, libc.MS_BIND | libc.MS_REC)
        os.chdir(STAGING)
        # pivot_root(".", ".") stacks the old root on the new one; detaching "." drops it
        # without needing a directory for it inside the new root.
        libc.pivot_root(".", ".")
        libc.umount2(".", libc.MNT_DETACH)
        os.chdir("/")
        libc.mount_setattr("/", _RO, recursive=False)
    except OSError as exc:
        raise SandboxError(f"pivot_root into the view: {exc}") from exc
