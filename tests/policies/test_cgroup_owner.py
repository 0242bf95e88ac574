"""Supervisor-owned cgroups on this host's cgroup v1 (memory, pids, freezer): created and
limited before the spawn, joined by the child through inherited fds, killed as a whole
tree (a double-forked grandchild included), removed without leftovers."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bitcoin_supervisor.interfaces import SandboxError
from bitcoin_supervisor.sandbox import (
    CgroupLimits,
    ComponentCgroup,
    create_cgroup,
    join_cgroup_fds,
    prepare_supervisor_cgroup,
    remove_cgroups,
)
from bitcoin_supervisor.sandbox._cgroupfs import places

from .conftest import NOBODY

TREE = Path(__file__).resolve().parent / "cgroup_tree.py"
SOURCE = Path("/etc/bitcoin-supervisor/policies/probe.toml")
_MIB = 1 << 20


class Tree:
    """A child spawned into ``cgroup`` through its join fds (see cgroup_tree.py)."""

    def __init__(self, cgroup: ComponentCgroup, mode: str = "hold") -> None:
        fds = cgroup.join_fds()
        self.proc = subprocess.Popen([sys.executable, str(TREE), mode, *map(str, fds)],
                                     pass_fds=fds, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cgroup.close_fds()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read()
        info = json.loads(line)
        self.pid, self.grandchild, self.cgroup = info["pid"], info["grandchild"], info["cgroup"]
        # Held from before the kill: tells when the grandchild (not our child) has exited.
        self.grandchild_fd = os.pidfd_open(self.grandchild)

    def grandchild_exited(self) -> bool:
        try:
            return bool(select.select([self.grandchild_fd], [], [], 5)[0])
        finally:
            os.close(self.grandchild_fd)

    def close(self) -> int:
        self.proc.communicate(timeout=30)
        return self.proc.returncode


@pytest.fixture
def cgroups() -> Iterator[list[ComponentCgroup]]:
    """Cgroups a test creates; killed and removed afterwards even when it fails."""
    made: list[ComponentCgroup] = []
    yield made
    for cgroup in made:
        cgroup.kill()
        cgroup.remove()


def _limit(dirs: dict[str, Path]) -> tuple[int, int]:
    memory = int((dirs["memory"] / "memory.limit_in_bytes").read_text())
    return memory, int((dirs["pids"] / "pids.max").read_text())


def test_v1_cgroup_limits_holds_and_kills_the_whole_tree_then_leaves_nothing(
        cgroups: list[ComponentCgroup]) -> None:
    with capture_logs() as created_logs:
        cgroup = create_cgroup(CgroupLimits(64 * _MIB, 16), "probe", source=SOURCE)
    assert cgroup is not None
    cgroups.append(cgroup)
    dirs = dict(cgroup.dirs)
    assert set(dirs) == {"memory", "pids", "freezer"}, "freezer is always included on v1"
    assert cgroup.version == "v1"
    assert all(d.name == cgroup.name and d.is_dir() for d in dirs.values())
    assert _limit(dirs) == (64 * _MIB, 16)
    assert [e["event"] for e in created_logs] == ["cgroup.created"]

    tree = Tree(cgroup)
    members = {tree.pid, tree.grandchild}
    for controller, leaf in dirs.items():
        assert set(map(int, (leaf / "cgroup.procs").read_text().split())) == members, controller
        assert f":{controller}:" in tree.cgroup and f"/{cgroup.name}\n" in tree.cgroup
    assert cgroup.usage()["pids"] == 2
    assert cgroup.usage()["memory_bytes"] > 0

    with capture_logs() as kill_logs:
        cgroup.kill()
    assert tree.grandchild_exited(), "the escaped grandchild survived the kill"
    assert tree.close() == -signal.SIGKILL
    assert cgroup.pids() == set()
    killed = [e for e in kill_logs if e["event"] == "cgroup.killed"]
    assert len(killed) == 1 and killed[0]["killed"] == 2, kill_logs

    with capture_logs() as remove_logs:
        cgroup.remove()
    assert not any(d.exists() for d in dirs.values())
    assert [e["event"] for e in remove_logs] == ["cgroup.removed"] * 3
    cgroup.remove()  # idempotent and quiet
    cgroup.kill()


def test_kill_wins_against_a_grandchild_that_keeps_forking(
        cgroups: list[ComponentCgroup]) -> None:
    cgroup = create_cgroup(CgroupLimits(None, 64), "forker", source=SOURCE)
    assert cgroup is not None
    cgroups.append(cgroup)
    tree = Tree(cgroup, "fork")
    cgroup.kill()
    assert tree.grandchild_exited()
    assert tree.close() == -signal.SIGKILL
    assert cgroup.pids() == set()
    cgroup.remove()
    assert not any(d.exists() for d in cgroup.dirs.values())


def test_without_limits_a_freezer_cgroup_still_holds_the_tree(
        cgroups: list[ComponentCgroup]) -> None:
    cgroup = create_cgroup(None, "plain", source=SOURCE)
    assert cgroup is not None
    cgroups.append(cgroup)
    assert set(cgroup.dirs) == {"freezer"}
    tree = Tree(cgroup)
    cgroup.kill()
    assert tree.grandchild_exited()
    assert tree.close() == -signal.SIGKILL


def test_names_are_unique_per_run_and_per_supervisor_process(
        cgroups: list[ComponentCgroup]) -> None:
    first = create_cgroup(None, "wallet", source=SOURCE)
    second = create_cgroup(None, "wallet", source=SOURCE)
    assert first is not None and second is not None
    cgroups += [first, second]
    assert first.name != second.name
    run_id = re.fullmatch(r"wallet@([0-9a-f]{8})\.(\d+)", first.name)
    assert run_id and second.name.startswith(f"wallet@{run_id[1]}.")
    # Another supervisor process (same parent cgroups) gets another run id.
    other = subprocess.run(
        [sys.executable, "-c", "from pathlib import Path\n"
         "from bitcoin_supervisor.sandbox import create_cgroup\n"
         "c = create_cgroup(None, 'wallet', source=Path('x'))\n"
         "assert c is not None\nprint(c.name)\nc.remove()"],
        capture_output=True, text=True, check=True)
    assert not other.stdout.strip().startswith(f"wallet@{run_id[1]}.")
    named = create_cgroup(None, "wallet", source=SOURCE, instance="datadir0a1b")
    assert named is not None
    cgroups.append(named)
    assert re.fullmatch(r"wallet@datadir0a1b\.\d+", named.name)
    with pytest.raises(SandboxError, match="cannot name a cgroup after component '../x'"):
        create_cgroup(None, "../x", source=SOURCE)


_AS_NOBODY = r"""
import json, sys
from pathlib import Path
from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import SandboxError
from bitcoin_supervisor.sandbox import CgroupLimits, create_cgroup
log.configure(json=True)
try:
    made = create_cgroup(CgroupLimits(64 << 20, 16, sys.argv[1]), "wallet",
                         source=Path(sys.argv[2]))
except SandboxError as exc:
    print(json.dumps({"error": str(exc)}))
else:
    print(json.dumps({"made": made is not None}))
"""


@pytest.mark.parametrize("optional", ["no", "unprivileged", "yes"])
def test_unprivileged_supervisor_fails_closed_or_warns_as_optional_says(
        optional: str) -> None:
    result = subprocess.run([sys.executable, "-c", _AS_NOBODY, optional, str(SOURCE)],
                            capture_output=True, text=True, user=NOBODY, group=NOBODY,
                            extra_groups=[], check=True)
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    if optional == "no":
        error = outcome["error"]
        assert "\n" not in error
        assert error.startswith("cgroup of wallet cannot be created: ")
        assert "Permission denied" in error
        assert error.endswith(f"set [cgroup] optional = true in {SOURCE}")
        assert events == []
    else:
        assert outcome == {"made": False}
        skipped = [e for e in events if e["event"] == "cgroup.skipped"]
        assert len(skipped) == 1 and skipped[0]["level"] == "warning"
        assert "Permission denied" in skipped[0]["reason"]


def test_join_fails_closed_on_a_bad_fd_and_closes_every_fd() -> None:
    bad = os.open("/dev/null", os.O_RDONLY)
    spare = os.open("/dev/null", os.O_WRONLY)
    with pytest.raises(SandboxError, match=f"through fd {bad} failed: Bad file descriptor"):
        join_cgroup_fds([bad, spare])
    for fd in (bad, spare):
        with pytest.raises(OSError):
            os.fstat(fd)


def test_join_fds_are_gone_after_close() -> None:
    cgroup = create_cgroup(None, "closing", source=SOURCE)
    assert cgroup is not None
    try:
        fds = cgroup.join_fds()
        cgroup.close_fds()
        with pytest.raises(SandboxError, match="join fds already closed"):
            cgroup.join_fds()
        for fd in fds:
            with pytest.raises(OSError):
                os.fstat(fd)
    finally:
        cgroup.remove()


def test_prepare_supervisor_cgroup_leaves_a_hybrid_host_alone() -> None:
    own_before = Path("/proc/self/cgroup").read_text()
    assert ":memory:" in own_before, "this test needs a host with cgroup v1 memory (hybrid)"
    with capture_logs() as logs:
        assert prepare_supervisor_cgroup() is None
        assert prepare_supervisor_cgroup() is None
    assert Path("/proc/self/cgroup").read_text() == own_before
    assert [e["event"] for e in logs] == ["cgroup.supervisor_unchanged"] * 2
    assert "cgroup v1 serves memory, pids" in logs[0]["reason"]


def _legacy_join() -> None:
    """A process joins (and prunes beside) its legacy child-side cgroup, then goes; the
    cgroup is removed after it."""
    legacy = subprocess.run(
        [sys.executable, "-c", "import os\nfrom pathlib import Path\n"
         "from bitcoin_supervisor.sandbox import CgroupLimits\n"
         "from bitcoin_supervisor.sandbox._cgroups import join_cgroups\n"
         "join_cgroups(CgroupLimits(64 << 20, 16), 'legacy', Path('x'))\n"
         "print(os.getpid())\n"],
        check=True, capture_output=True, text=True)
    remove_cgroups("legacy", int(legacy.stdout.split()[-1]))


def test_the_child_side_join_never_prunes_a_supervisor_owned_cgroup(
        cgroups: list[ComponentCgroup]) -> None:
    cgroup = create_cgroup(CgroupLimits(64 * _MIB, 16), "pruned", source=SOURCE)
    assert cgroup is not None
    cgroups.append(cgroup)
    # The legacy path removes empty siblings named "<name>-<dead pid>.<pid ns>"; an owned
    # cgroup is empty between create and spawn and its sequence number is no pid.
    _legacy_join()
    assert all(d.is_dir() for d in cgroup.dirs.values())


def test_the_child_side_join_prunes_only_its_own_pid_namespace_s_cgroups() -> None:
    # The hierarchy is the host's, pids are per namespace: a dead pid here may be a live
    # process in a container that is about to join the cgroup it just made.
    other = subprocess.run(["unshare", "--pid", "--fork", "stat", "-Lc", "%i",
                            "/proc/self/ns/pid"], check=True, capture_output=True, text=True)
    own, foreign = os.stat("/proc/self/ns/pid").st_ino, int(other.stdout)
    assert own != foreign
    dead = 4_194_303  # above this host's pid_max: no process has it anywhere
    parents = {p.leaf("x", 1).parent for p in places(("memory", "pids"))[0]}
    assert parents, "no memory/pids hierarchy found for this process"
    # Names of this run's own: another suite on the host may run this test at once.
    stale = f"stale{os.getpid()}"
    made = [parent / f"{stale}-{dead}.{ns}" for parent in parents for ns in (own, foreign)]
    for d in made:
        d.mkdir(parents=True)
    try:
        _legacy_join()
        assert not any(d.exists() for d in made if d.name.endswith(f".{own}")), made
        assert all(d.is_dir() for d in made if d.name.endswith(f".{foreign}")), made
    finally:
        for d in made:
            if d.exists():
                d.rmdir()
