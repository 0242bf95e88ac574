"""Per-component disk budgets the kernel enforces: a sparse ext4 image loop-mounted on the
component's datadir.

Why an image and not a quota: ext4 project quotas need the ``quota``/``project`` features
switched on when the host filesystem is made (they are not on this machine's ``/``), and
an xfs/btrfs quota would tie the product to one host filesystem. A loop-mounted image
works on any host filesystem, bounds bytes and inodes exactly (``ENOSPC`` inside, nothing
outside), and its mount options (``nosuid,nodev,noexec``) hold whatever the role writes.

The image lives at ``<state>/images/<component>.img``; it is made with e2fsprogs
(``mkfs.ext4``, ``resize2fs``) and mounted with util-linux (``mount -o loop``, which sets
the loop device's autoclear flag, so an unmount frees the device). Those tools are the
maintained implementation of ext4 and of the loop ioctls; this module only decides when to
call them. A mount left behind by a supervisor that was SIGKILLed is found again through
``/proc/self/mountinfo`` and the loop device's ``backing_file`` and reused as it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bitcoin_supervisor.interfaces import DiskBudget, SandboxError
from bitcoin_supervisor.log import get_logger

__all__ = ["DiskBudget", "DiskImage", "DiskUsage", "format_size", "loop_support_problem"]

_MOUNT_OPTIONS = "loop,nosuid,nodev,noexec"
# A filesystem with less than this left (or no inode left) is shown as full: a write
# that needs more fails with ENOSPC, and most writes need more than a few blocks.
FULL_BELOW_BYTES = 1 << 20
_TOOL_TIMEOUT_S = 120.0
# The sandbox binds the datadir into the role's view: the image's own lost+found (root's,
# mode 0700) would be an empty directory of root's in it, useless to a role. e2fsck makes
# it again when it needs it.
_LOST_FOUND = "lost+found"
MIGRATED_SUFFIX = ".before-disk-budget"
_DETACH_WAIT_S = 10.0  # how long a grow waits for the last user of the image to go

log = get_logger()


@dataclass(frozen=True)
class DiskUsage:
    """What a component's filesystem holds now and can hold (statvfs of its mount)."""

    used_bytes: int
    budget_bytes: int
    used_inodes: int
    budget_inodes: int
    free_bytes: int  # what a write may still take (ext4 keeps a few blocks back)

    @property
    def full(self) -> bool:
        """True when a write of any size is likely to fail with ENOSPC."""
        return self.free_bytes < FULL_BELOW_BYTES or self.used_inodes >= self.budget_inodes


def loop_support_problem() -> str | None:
    """Why loop-mounted images cannot be used here (one line), None when they can: root,
    ``/dev/loop-control`` and the e2fsprogs/util-linux tools are all present."""
    if os.geteuid() != 0:
        return "loop mounts need root (this supervisor runs unprivileged)"
    if not os.path.exists("/dev/loop-control"):
        return ("no loop devices here (/dev/loop-control is missing: no loop driver, or a "
                "private /dev such as systemd's PrivateDevices=yes)")
    for tool in ("mkfs.ext4", "e2fsck", "resize2fs", "mount", "umount", "losetup", "cp"):
        if _tool(tool) is None:
            return f"{tool} is not installed (e2fsprogs, mount)"
    return None


class DiskImage:
    """One component's image and the datadir it is mounted on. Every method blocks on
    file I/O and external tools (call from an executor) and raises SandboxError, one
    line, for anything that fails; nothing here ever deletes data."""

    def __init__(self, image: Path, mountpoint: Path, budget: DiskBudget) -> None:
        self.image = image
        self.mountpoint = mountpoint
        self.budget = budget

    def check_change(self) -> None:
        """Refuse a budget this image cannot take without losing data: a smaller size
        (ext4 images are only grown) or more inodes than the image has and growing it
        gives. Nothing to check before the image exists."""
        try:
            size = self.image.stat().st_size
        except FileNotFoundError:
            return
        except OSError as exc:
            raise SandboxError(f"cannot read disk image {self.image}: {exc.strerror}") from exc
        if self.budget.bytes < size:
            raise SandboxError(
                f"disk_budget of {self.image.stem} cannot shrink from {format_size(size)} to "
                f"{format_size(self.budget.bytes)} (its image {self.image} only grows); keep "
                f"{format_size(size)} or more")

    def mount(self, uid: int, gid: int) -> bool:
        """Mount the image on the datadir, making it (owned by ``uid``:``gid``) or
        growing it to the budget first; reuse a mount left by an earlier supervisor.

        A datadir that already holds files but no image is migrated: the files are
        copied into the new image, and the original directory is kept beside it as
        ``<datadir>.before-disk-budget`` (never deleted). Returns True when it mounted,
        False when it found the image mounted already.
        """
        mounted = _mounted_source(self.mountpoint)
        if mounted is not None:
            if not _backs(mounted, self.image):
                raise SandboxError(
                    f"datadir {self.mountpoint} is already a mount point ({mounted}), not "
                    f"of {self.image}; unmount it first")
            if self.image.stat().st_size >= self.budget.bytes:
                return False
            self.unmount()  # grown offline below: online resize2fs is refused here
        self.check_change()
        _detach_stale(self.image)
        fresh = not self.image.exists()
        self.mountpoint.mkdir(parents=True, exist_ok=True, mode=0o700)
        migrate = fresh and any(self.mountpoint.iterdir())
        if fresh:
            self._make(uid, gid)
        if migrate:
            self._migrate(uid, gid)
        self._grow()
        self._run("mount", "-t", "ext4", "-o", _MOUNT_OPTIONS, str(self.image),
                  str(self.mountpoint))
        source = _mounted_source(self.mountpoint)
        if source is None:
            raise SandboxError(f"mount of {self.image} on {self.mountpoint} did not appear")
        with contextlib.suppress(OSError):  # kept when it holds what e2fsck recovered
            (self.mountpoint / _LOST_FOUND).rmdir()
        log.info("disk.mounted", image=str(self.image), datadir=str(self.mountpoint),
                 device=source, budget_bytes=self.budget.bytes,
                 budget_inodes=self.budget.inodes, made=fresh, migrated=migrate)
        return True

    def unmount(self) -> bool:
        """Unmount the datadir if the image is mounted there (the loop device goes with
        it); True when something was unmounted. Retries a busy mount for a few seconds
        (a process of the component still exiting), then raises SandboxError."""
        source = _mounted_source(self.mountpoint)
        if source is None or not _backs(source, self.image):
            return False
        deadline = time.monotonic() + 5.0
        while True:
            done = subprocess.run([_need("umount"), str(self.mountpoint)],
                                  capture_output=True, text=True, timeout=_TOOL_TIMEOUT_S,
                                  check=False)
            if done.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise SandboxError(f"cannot unmount {self.mountpoint}: "
                                   f"{_last_line(done.stderr)}")
            time.sleep(0.05)  # a dying process still holds a file: no event to await
        # The loop device goes by itself (autoclear) once no mount namespace holds the
        # filesystem any more; one created meanwhile elsewhere on the host may delay it.
        log.info("disk.unmounted", image=str(self.image), datadir=str(self.mountpoint))
        return True

    def usage(self) -> DiskUsage | None:
        """Bytes and inodes used and available on the mounted image; None when it is
        not mounted. Never raises."""
        try:
            source = _mounted_source(self.mountpoint)
            if source is None or not _backs(source, self.image):
                return None
            st = os.statvfs(self.mountpoint)
        except (OSError, SandboxError):
            return None
        return DiskUsage(used_bytes=(st.f_blocks - st.f_bfree) * st.f_frsize,
                         budget_bytes=st.f_blocks * st.f_frsize,
                         used_inodes=st.f_files - st.f_ffree, budget_inodes=st.f_files,
                         free_bytes=st.f_bavail * st.f_frsize)

    # -- the steps ----------------------------------------------------------------------

    def _make(self, uid: int, gid: int) -> None:
        self.image.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = self.image.with_suffix(".img.partial")
        try:
            with open(partial, "wb") as f:
                f.truncate(self.budget.bytes)  # sparse: takes space only as it is used
            # -m 0: no blocks reserved for root (the budget is the role's, all of it);
            # a small journal (the default is 64 MiB); 256-byte inodes. A fresh sparse
            # file reads as zeros: assume_storage_prezeroed spares writing the inode
            # tables and journal (4 MiB on the host for a 16 GiB image instead of 130).
            self._run("mkfs.ext4", "-F", "-q", "-m", "0", "-J", "size=4", "-I", "256",
                      "-N", str(self.budget.inodes), "-L", self.image.stem[:16],
                      "-E", f"root_owner={uid}:{gid},lazy_itable_init=1,nodiscard,"
                      "assume_storage_prezeroed=1", str(partial))
            os.rename(partial, self.image)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise

    def _migrate(self, uid: int, gid: int) -> None:
        """Copy the plain datadir's files into the fresh image, then set the directory
        aside; on any failure the image goes and the datadir stays as it was."""
        staging = self.image.with_suffix(".migrating")
        staging.mkdir(mode=0o700, exist_ok=True)
        kept = self.mountpoint.with_name(self.mountpoint.name + MIGRATED_SUFFIX)
        try:
            if kept.exists():
                raise SandboxError(f"cannot migrate {self.mountpoint} into its disk image: "
                                   f"{kept} exists already; move it away")
            self._run("mount", "-t", "ext4", "-o", _MOUNT_OPTIONS, str(self.image),
                      str(staging))
            try:
                with contextlib.suppress(OSError):
                    (staging / _LOST_FOUND).rmdir()
                # cp -a keeps owners, modes, times, links and sparse files.
                self._run("cp", "-a", "--", f"{self.mountpoint}/.", f"{staging}/")
                os.chown(staging, uid, gid)
            finally:
                self._run("umount", str(staging))
            os.rename(self.mountpoint, kept)
            self.mountpoint.mkdir(mode=0o700)
        except BaseException:
            with contextlib.suppress(OSError):
                self.image.unlink()
            raise
        finally:
            with contextlib.suppress(OSError):
                staging.rmdir()
        log.warning("disk.migrated", datadir=str(self.mountpoint), image=str(self.image),
                    original_kept=str(kept))

    def _grow(self) -> None:
        """Grow the unmounted image (and its filesystem) to the budget. Offline: online
        growth (EXT4_IOC_RESIZE_FS) needs CAP_SYS_RESOURCE, which a supervisor in a
        container may lack; and never while a loop device still serves the image (a
        mount namespace elsewhere may hold the filesystem for a moment after the unmount:
        resizing under a live filesystem would corrupt it)."""
        size = self.image.stat().st_size
        if size >= self.budget.bytes:
            return
        deadline = time.monotonic() + _DETACH_WAIT_S
        while (held := _loops_of(self.image)):
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"cannot grow {self.image}: its filesystem is still in use through "
                    f"{', '.join(held)} (mounted in another mount namespace); retry once "
                    "that is gone")
            _detach_stale(self.image)
            time.sleep(0.05)  # the kernel frees it asynchronously: no event to await
        with open(self.image, "r+b") as f:
            f.truncate(self.budget.bytes)
        # resize2fs insists on a fresh check; exit 1 means e2fsck fixed something (it
        # makes lost+found again), which is fine.
        self._run("e2fsck", "-f", "-p", str(self.image), ok=(0, 1))
        self._run("resize2fs", str(self.image))
        log.info("disk.grown", image=str(self.image), from_bytes=size,
                 to_bytes=self.budget.bytes)

    def _run(self, tool: str, *args: str, ok: tuple[int, ...] = (0,)) -> None:
        done = subprocess.run([_need(tool), *args], capture_output=True, text=True,
                              timeout=_TOOL_TIMEOUT_S, check=False)
        if done.returncode not in ok:
            said = _last_line(done.stderr or done.stdout) or f"exit {done.returncode}"
            if "No space left" in said:
                said = "no space left on the host filesystem for the image"
            raise SandboxError(f"{tool} failed for disk image {self.image}: {said}")


# -- what the kernel says ------------------------------------------------------------------

def _mounted_source(mountpoint: Path) -> str | None:
    """The device mounted on ``mountpoint`` in this mount namespace (the last mount
    there wins), or None."""
    target = os.path.realpath(mountpoint)
    found = None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                if _unescape(fields[4]) == target:
                    found = _unescape(fields[sep + 2])
    except (OSError, ValueError) as exc:
        raise SandboxError(f"cannot read /proc/self/mountinfo: {exc}") from exc
    return found


# ioctl(LOOP_GET_STATUS64) and the head of its struct loop_info64 (linux/loop.h):
# lo_device, lo_inode (u64 each), of a struct of 232 bytes.
_LOOP_GET_STATUS64 = 0x4C05
_LOOP_INFO64_SIZE = 232


def _backs(device: str, image: Path) -> bool:
    """True when loop device ``device`` (e.g. /dev/loop3) serves the file ``image``.

    Compared by the file's device and inode number as the kernel holds them, not by
    path: /sys shows a backing file's path as seen from the root of whoever reads it,
    so the same path may name another installation's image in another mount namespace
    (a container, the fresh-system check), whose device this one must never take for
    its own. Never raises: False for any other device, a detached loop or an error.
    """
    name = os.path.basename(device)
    if not name.startswith("loop"):
        return False
    try:
        st = os.stat(image)
        fd = os.open(f"/dev/{name}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        info = bytearray(_LOOP_INFO64_SIZE)
        fcntl.ioctl(fd, _LOOP_GET_STATUS64, info)
    except OSError:  # ENXIO: no file attached
        return False
    finally:
        os.close(fd)
    lo_device, lo_inode = struct.unpack_from("=QQ", info)
    # The kernel's huge_encode_dev: minor's low byte, major, minor's high bits.
    major, minor = (lo_device & 0xFFF00) >> 8, (lo_device & 0xFF) | ((lo_device >> 12) & 0xFFF00)
    return lo_inode == st.st_ino and (major, minor) == (os.major(st.st_dev),
                                                         os.minor(st.st_dev))


def _loops_of(image: Path) -> list[str]:
    """The loop devices (/dev/loopN) attached to ``image``."""
    try:
        names = [n for n in os.listdir("/sys/block") if n.startswith("loop")]
    except OSError:
        return []
    return [f"/dev/{n}" for n in names if _backs(f"/dev/{n}", image)]


def _detach_stale(image: Path) -> None:
    """Detach loop devices still attached to ``image`` but mounted nowhere here (a
    supervisor killed between attach and mount); one still in use only gets its
    autoclear flag (it goes when its last user does)."""
    mounted = _mounted_devices()
    for device in _loops_of(image):
        if device not in mounted:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run([_need("losetup"), "-d", device], capture_output=True,
                               timeout=_TOOL_TIMEOUT_S, check=False)


def _mounted_devices() -> set[str]:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            return {_unescape(line.split(" - ", 1)[1].split()[1]) for line in f}
    except (OSError, IndexError):
        return set()


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040)."""
    if "\\" not in field:
        return field
    return field.encode().decode("unicode_escape").encode("latin-1").decode("utf-8",
                                                                           "replace")


def _tool(name: str) -> str | None:
    return shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def _need(name: str) -> str:
    found = _tool(name)
    if found is None:
        raise SandboxError(f"{name} is not installed (e2fsprogs, mount): cannot use disk "
                           "budgets")
    return found


def _last_line(text: str) -> str:
    lines = [s.strip() for s in text.strip().splitlines() if s.strip()]
    return lines[-1] if lines else ""


def format_size(n: int) -> str:
    """``n`` bytes for people: "2.0 GiB", "512.0 KiB", "17 B"."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} B"
