"""Watch a component's process tree die by pidfd, and read how it ended from the kernel.

A warm standby may be promoted only once the process it replaces can no longer touch the
datadir: the launched process (a sandbox waiter) and PID 1 of its pid namespace below it
have exited (the kernel kills and reaps the rest of a namespace before its PID 1 is
gone). Pidfds say so as soon as it happens, and a pidfd of a reaped process also says how
it ended (``PIDFD_GET_INFO``, Linux 6.15+) before the launcher's own wait has reported it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct

__all__ = ["ProcessTree", "readable"]

# PIDFD_GET_INFO (linux/pidfd.h): _IOWR(0xFF, 11, struct pidfd_info), whose first version
# is 64 bytes: u64 mask at 0, s32 exit_code (a wait status) at 60. No library wraps it
# (neither psutil nor os), hence these few lines.
_PIDFD_GET_INFO = (3 << 30) | (64 << 16) | (0xFF << 8) | 11
_PIDFD_INFO_EXIT = 1 << 3


async def readable(fd: int) -> None:
    """Return once ``fd`` is readable (a pidfd: its process has exited), on the running
    loop's own poller. Cancellable."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not done.done():
            done.set_result(None)
    loop.add_reader(fd, ready)
    try:
        await done
    finally:
        loop.remove_reader(fd)


class ProcessTree:
    """Pidfds of a launched process and the processes below it, taken once it runs.

    ``gone`` is set when every one of them has exited; ``returncode`` is then how the
    process whose status the launched one passes on ended (a sandbox waiter's single
    child, else the launched process itself), None when the kernel cannot say yet.
    """

    def __init__(self, pid: int) -> None:
        inner = _descendants(pid)
        self._fds = _pidfds([pid, *inner])
        direct = _children(pid)
        # The waiter re-raises its child's signal or exits with its code.
        passes_on = len(direct) == 1 and bool(inner) and direct[0] == inner[0]
        self._status_fd: int | None = (
            self._fds[1] if passes_on and len(self._fds) > 1
            else self._fds[0] if self._fds else None)
        self.inner = inner
        self.gone = asyncio.Event()
        self.returncode: int | None = None

    async def watch(self, *, read_status: bool = True) -> None:
        """Set ``gone`` once every process has exited (and, with ``read_status``, read
        ``returncode``). Cancellable; never raises otherwise."""
        for fd in self._fds:
            await readable(fd)
        if read_status and self._status_fd is not None:
            status = _reaped_status(self._status_fd)
            if status is not None:
                self.returncode = os.waitstatus_to_exitcode(status)
        self.gone.set()

    def close(self) -> None:
        """Close the pidfds (after ``watch`` is done or cancelled). Idempotent."""
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        self._status_fd = None


def _reaped_status(pidfd: int) -> int | None:
    """The wait status of the reaped process behind ``pidfd``; None when the kernel has
    none (not reaped yet, or a kernel without pidfd exit info). Never raises."""
    buf = bytearray(64)
    struct.pack_into("Q", buf, 0, _PIDFD_INFO_EXIT)
    try:
        fcntl.ioctl(pidfd, _PIDFD_GET_INFO, buf)
    except OSError:
        return None
    mask, = struct.unpack_from("Q", buf, 0)
    if not mask & _PIDFD_INFO_EXIT:
        return None
    status: int = struct.unpack_from("i", buf, 60)[0]
    return status


def _pidfds(pids: list[int]) -> list[int]:
    """Pidfds of ``pids`` (those that still exist); a pidfd stays valid after a pid is
    reused."""
    fds = []
    for pid in pids:
        with contextlib.suppress(OSError):
            fds.append(os.pidfd_open(pid))
    return fds


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid``; never raises."""
    # The kernel's own children lists, not psutil: psutil reads every process's stat to
    # build a parent map (on the event loop), and importing it costs the daemon ~1 MiB.
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as fh:
                found.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return found


def _descendants(pid: int) -> list[int]:
    """Pids below ``pid`` (a sandboxed role's waiter has the role itself as its child);
    those that exited meanwhile are left out. Never raises."""
    found: list[int] = []
    todo = [pid]
    while todo:
        children = _children(todo.pop())
        found.extend(children)
        todo.extend(children)
    return found
