"""Boot the host's systemd as PID 1 of throw-away namespaces, so tests can drive real units.

PID 1 of the test machine is not systemd. This harness gives systemd its own cgroup2
subtree and PID, mount, UTS, IPC, network and cgroup namespaces; inside them it sees a
private /dev (its console a pty), /run, /tmp, /var/tmp, /var/lib, /var/log/journal and
/etc/systemd/system (all tmpfs), a read-only /sys and /proc/sys, and only the unit files
this harness links into its unit path: the stock targets and slices (without their
.wants, so nothing of the host OS starts), journald, and the units under test. The rest
of the host filesystem is shared, so services can run the repository's venv.

The harness's state directory (units, console log) appears inside as ``INNER_STATE``
(``/run/systemd-test``), outside the /tmp that ``PrivateTmp=`` would hide.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

SYSTEMD = Path("/lib/systemd/systemd")
STOCK_UNITS = Path("/lib/systemd/system")
INNER_STATE = "/run/systemd-test"
# Where the host keeps these controllers on cgroup v1 (hybrid hosts), the booted systemd
# (unified mode) gets them too, under INNER_STATE/cgroup-v1/<controller>, rooted at a
# fresh cgroup of this harness: the supervisor puts each component's limits there.
V1_CONTROLLERS = ("memory", "pids")
HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_EXTRA_UNITS = ("systemd-journald.service", "systemd-journald.socket",
                "systemd-journald-dev-log.socket", "systemd-poweroff.service",
                "systemd-halt.service", "systemd-reboot.service", "systemd-exit.service")

# Runs as PID 1 of the new PID namespace and becomes systemd. "$1" is the host path of
# the state directory; stdin is the pty that becomes /dev/console.
_INNER = r"""#!/bin/bash
set -eu
ST=$1
CONSOLE=$(tty)
mount --make-rprivate /
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
if [ -e /proc/sysrq-trigger ]; then mount --bind /proc/sysrq-trigger /proc/sysrq-trigger
  mount -o remount,bind,ro /proc/sysrq-trigger; fi
D=$ST/dev; mkdir -p "$D"; mount -t tmpfs -o mode=755,nosuid tmpfs "$D"
for n in null zero full random urandom tty; do touch "$D/$n"; mount --bind "/dev/$n" "$D/$n"; done
mkdir "$D/pts" "$D/shm" "$D/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$D/pts"
ln -s pts/ptmx "$D/ptmx"; ln -s /proc/self/fd "$D/fd"
ln -s /proc/self/fd/0 "$D/stdin"; ln -s /proc/self/fd/1 "$D/stdout"
ln -s /proc/self/fd/2 "$D/stderr"
touch "$D/console"; mount --bind "$CONSOLE" "$D/console"
mount --move "$D" /dev
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
mkdir -p @INNER@ && mount --bind "$ST" @INNER@
for c in @V1@; do mount -t cgroup -o "$c" cgroup "@INNER@/cgroup-v1/$c"; done
# A checkout under /tmp or /var/tmp stays visible at its own path below the fresh tmpfs.
CO=@CHECKOUT@; if [ -n "$CO" ]; then mkdir -p @INNER@/checkout
  mount --bind "$CO" @INNER@/checkout; fi
for d in /tmp /var/tmp; do mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$d"; done
if [ -n "$CO" ]; then mkdir -p "$CO"; mount --bind @INNER@/checkout "$CO"; fi
mount -t tmpfs -o mode=755 tmpfs /var/lib
mount -t tmpfs -o mode=755 tmpfs /etc/systemd/system
if [ -d /var/log/journal ]; then mount -t tmpfs -o mode=2755 tmpfs /var/log/journal; fi
export container=systemd-test SYSTEMD_UNIT_PATH=@INNER@/units \
       SYSTEMD_GENERATOR_PATH=@INNER@/empty SYSTEMD_ENVIRONMENT_GENERATOR_PATH=@INNER@/empty \
       SYSTEMD_PROC_CMDLINE=
exec @SYSTEMD@ --system --log-target=journal --log-level=info --show-status=no \
     --unit=multi-user.target
"""


class BootError(AssertionError):
    """systemd did not come up (raised loudly: a test must not skip for this)."""


def host_cgroup2_root() -> Path:
    """The host's cgroup2 hierarchy (pure v2 at /sys/fs/cgroup or the hybrid ``unified``
    mount); raises BootError when there is none."""
    mounts = {line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
              if line.split()[2] == "cgroup2"}
    for candidate in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if candidate in mounts:
            return Path(candidate)
    raise BootError("no cgroup2 hierarchy mounted on the host")


class BootedSystemd:
    """A systemd running as PID 1 of its own namespaces; drive it with :meth:`run`."""

    def __init__(self, state: Path, v1_controllers: list[str]) -> None:
        self.state = state
        self.v1_controllers = v1_controllers
        self.cgroup = Path()  # set by _launch: the cgroup2 root of the namespace
        self._cgroups: list[Path] = []
        self._script: subprocess.Popen[bytes] | None = None
        self.pid1 = 0

    @property
    def units(self) -> Path:
        """Host path of the only directory systemd loads units from."""
        return self.state / "units"

    def inner(self, host_path: Path) -> str:
        """The path under which systemd and its services see ``host_path`` (a file in the
        state directory)."""
        return f"{INNER_STATE}/{host_path.relative_to(self.state)}"

    def inside(self, path: str) -> Path:
        """Host path of ``path`` as the namespaces see it (through /proc/<pid1>/root)."""
        return Path(f"/proc/{self.pid1}/root") / path.lstrip("/")

    def run(self, *argv: str, check: bool = True, timeout: float = 30.0
            ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside every namespace of this systemd and return its result.

        Blocks up to ``timeout`` seconds. Raises AssertionError (with the command's
        stderr) when ``check`` and it exits non-zero; TimeoutExpired on timeout.
        """
        env = {"PATH": HOST_PATH, "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "TERM": "dumb"}
        result = subprocess.run(
            ["nsenter", "-t", str(self.pid1), "-m", "-u", "-i", "-n", "-p", "-C", "--",
             "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv],
            capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n"
                                 f"{result.stdout}{result.stderr}")
        return result

    def systemctl(self, *args: str, check: bool = True, timeout: float = 60.0) -> str:
        """``systemctl ARGS`` inside; returns its stdout stripped (see :meth:`run`)."""
        return self.run("systemctl", *args, check=check, timeout=timeout).stdout.strip()

    def install(self, name: str, text: str) -> None:
        """Put unit ``name`` with contents ``text`` on the unit path and daemon-reload."""
        (self.units / name).write_text(text)
        self.systemctl("daemon-reload")

    def proc_overmounts(self) -> list[str]:
        """Mount points below /proc as PID 1 sees them, deepest first."""
        points = [line.split()[4] for line in
                  Path(f"/proc/{self.pid1}/mountinfo").read_text().splitlines()]
        return sorted((p for p in points if p.startswith("/proc/")), key=len, reverse=True)

    def console_log(self) -> str:
        """What systemd wrote to its console so far."""
        path = self.state / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- lifecycle ---------------------------------------------------------------------
    def _launch(self, parents: list[Path]) -> None:
        """Create a fresh cgroup below each of ``parents`` (cgroup2 first) and start the
        launcher, which joins them and becomes systemd in new namespaces."""
        name = f"systemd-test-{os.getpid()}-{secrets.token_hex(3)}"
        for parent in parents:
            (parent / name).mkdir()
            self._cgroups.append(parent / name)
        self.cgroup = self._cgroups[0]
        _populate(self.state, self.v1_controllers)
        st = self.state
        # script(1) allocates the pty that becomes /dev/console and logs it; the shell
        # joins the fresh cgroups (they become the cgroup namespace's roots) first.
        join = " && ".join(f"echo $$ > {cgroup}/cgroup.procs" for cgroup in self._cgroups)
        shell = (f"{join} && echo $$ > {st}/unshare.pid && exec unshare --pid --fork "
                 f"--mount-proc --mount --uts --ipc --net --cgroup --propagation private "
                 f"{st}/inner.sh {st}")
        self._script = subprocess.Popen(
            ["script", "-q", "-f", "-e", "-c", shell, str(st / "console.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)

    def _wait_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._script is None or self._script.poll() is not None:
                break
            pid1 = _first_child(_read_int(self.state / "unshare.pid"))
            if pid1 and _comm(pid1) == "systemd":
                self.pid1 = pid1
                if self.inside("/run/systemd/private").is_socket():
                    return
            time.sleep(0.05)  # nothing to wait on: systemd signals readiness to nobody
        exited = self._script.poll() if self._script is not None else None
        why = (f"its launcher exited with status {exited}" if exited is not None
               else f"not up within {timeout:.0f}s")
        raise BootError(f"systemd did not boot ({why}); console:\n" + self.console_log())

    def poweroff(self, timeout: float = 20.0) -> None:
        """Power systemd off (SIGRTMIN+4), SIGKILL it (and so its whole PID namespace)
        after ``timeout`` seconds, reap the launcher and remove the cgroup. Never raises
        for an already dead systemd."""
        if self.pid1 and _comm(self.pid1) == "systemd":
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid1, signal.SIGRTMIN + 4)
            if not _wait_gone(self.pid1, timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid1, signal.SIGKILL)
        if self._script is not None:
            try:
                self._script.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._script.kill()
                self._script.wait()
        for cgroup in self._cgroups:
            _remove_cgroup(cgroup)


@contextlib.contextmanager
def booted_systemd(state: Path, boot_timeout: float = 30.0) -> Iterator[BootedSystemd]:
    """Boot systemd with ``state`` (a fresh, empty directory) as its state directory;
    yield it once its private bus socket exists and the boot finished; power it off and
    clean up on exit, also when the body raises. Must run as root. Raises BootError."""
    if os.geteuid() != 0:
        raise BootError("booting systemd needs root")
    v1 = _v1_hierarchies()
    parents = [host_cgroup2_root(), *(point / own.lstrip("/") for point, own in v1.values())]
    booted = BootedSystemd(state, list(v1))
    try:
        booted._launch(parents)
        booted._wait_up(boot_timeout)
        result = booted.run("systemctl", "is-system-running", "--wait", check=False,
                            timeout=boot_timeout)
        if result.stdout.strip() not in ("running", "degraded"):
            raise BootError(f"systemd booted into state {result.stdout.strip()!r}:\n"
                            + booted.systemctl("--failed", "--no-legend", check=False))
        # systemd is up: its boot-time sysctl writes hit a read-only /proc/sys and failed
        # harmlessly. Services must now see /proc as on a real host, without overmounts:
        # the kernel refuses a new proc mount in a user namespace (the components'
        # sandbox) while a locked mount hides part of every proc mount.
        booted.run("umount", *booted.proc_overmounts())
        yield booted
    finally:
        booted.poweroff()


def _v1_hierarchies() -> dict[str, tuple[Path, str]]:
    """Mount point and own cgroup of each v1 hierarchy carrying one of ``V1_CONTROLLERS``
    on the host (a hybrid host such as this one keeps memory and pids there)."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            own[controller] = path
    found = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _source, options = right.split()[:3]
        for controller in V1_CONTROLLERS:
            if fstype == "cgroup" and controller in options.split(",") and controller in own:
                found[controller] = (Path(left.split()[4]), own[controller])
    return found


def _populate(state: Path, v1_controllers: list[str]) -> None:
    units = state / "units"
    for controller in v1_controllers:
        (state / "cgroup-v1" / controller).mkdir(parents=True)
    (units / "sockets.target.wants").mkdir(parents=True)
    (state / "empty").mkdir()
    for pattern in ("*.target", "*.slice"):
        for stock in STOCK_UNITS.glob(pattern):
            (units / stock.name).symlink_to(stock)
    for name in _EXTRA_UNITS:
        (units / name).symlink_to(STOCK_UNITS / name)
    for name in ("systemd-journald.socket", "systemd-journald-dev-log.socket"):
        (units / "sockets.target.wants" / name).symlink_to(f"../{name}")
    inner = state / "inner.sh"
    repo = Path(__file__).resolve().parents[2]
    under_tmp = any(repo.is_relative_to(d) for d in ("/tmp", "/var/tmp"))
    inner.write_text(_INNER.replace("@INNER@", INNER_STATE).replace("@SYSTEMD@", str(SYSTEMD))
                     .replace("@V1@", " ".join(v1_controllers))
                     .replace("@CHECKOUT@", shlex.quote(str(repo)) if under_tmp else "''"))
    inner.chmod(0o755)


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _first_child(pid: int) -> int:
    if not pid:
        return 0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return int(children[0]) if children else 0


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _wait_gone(pid: int, timeout: float) -> bool:
    """True once ``pid`` no longer exists; pidfd poll, so no sleep loop."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def _remove_cgroup(cgroup: Path) -> None:
    """rmdir the cgroup tree bottom-up; an emptied cgroup can linger a moment."""
    deadline = time.monotonic() + 5
    while cgroup.exists():
        for top, dirs, _files in os.walk(cgroup, topdown=False):
            for name in dirs:
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(top, name))
        with contextlib.suppress(OSError):
            cgroup.rmdir()
        if time.monotonic() > deadline:
            raise AssertionError(f"could not remove cgroup {cgroup}")
        time.sleep(0.05)


def cgroup_pids(cgroup: Path) -> set[int]:
    """Host pids of every process in ``cgroup`` and below (empty when it is gone)."""
    pids: set[int] = set()
    for top, _dirs, files in os.walk(cgroup):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in Path(top, "cgroup.procs").read_text().split())
    return pids


def alive(pids: Sequence[int] | set[int]) -> set[int]:
    """The subset of host ``pids`` that still exist (zombies count as gone)."""
    living = set()
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            living.add(pid)
    return living

