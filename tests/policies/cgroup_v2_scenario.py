"""Runs inside a throw-away pure cgroup v2 view (see test_cgroup_v2.py): a cgroup
namespace rooted at a fresh test cgroup, with only a cgroup2 mount at /sys/fs/cgroup.
Plays the supervisor through prepare, create, spawn, kill and remove; prints one JSON
line of what it saw for the test to check."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from bitcoin_supervisor.interfaces import SandboxError
from bitcoin_supervisor.sandbox import CgroupLimits, create_cgroup, prepare_supervisor_cgroup

ROOT = Path("/sys/fs/cgroup")
TREE = Path(__file__).resolve().parent / "cgroup_tree.py"
SOURCE = Path("/etc/bitcoin-supervisor/policies/probe.toml")


def own() -> str:
    return Path("/proc/self/cgroup").read_text().splitlines()[-1]


def main() -> None:
    seen: dict[str, Any] = {"own_before": own()}
    with capture_logs() as logs:
        seen["base"] = str(prepare_supervisor_cgroup(("memory", "pids", "hugetlb")))
        seen["own_prepared"] = own()
        seen["base_again"] = str(prepare_supervisor_cgroup(("memory", "pids", "hugetlb")))
        seen["own_again"] = own()
    seen["prepare_events"] = [dict(e) for e in logs]
    seen["subtree_control"] = (ROOT / "cgroup.subtree_control").read_text().split()

    cgroup = create_cgroup(None, "probe", source=SOURCE)
    assert cgroup is not None
    seen["dirs"] = {k: str(v) for k, v in cgroup.dirs.items()}
    leaf = cgroup.dirs[""]
    seen["leaf_files"] = sorted(p.name for p in leaf.iterdir())
    seen["leaf_controllers"] = (leaf / "cgroup.controllers").read_text().split()
    fds = cgroup.join_fds()
    proc = subprocess.Popen([sys.executable, str(TREE), "hold", *map(str, fds)],
                            pass_fds=fds, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    cgroup.close_fds()
    assert proc.stdout is not None
    tree = json.loads(proc.stdout.readline())
    seen["tree"] = tree
    seen["members"] = sorted(cgroup.pids())
    grandchild = os.pidfd_open(tree["grandchild"])  # not our child: no wait() for it
    with capture_logs() as logs:
        cgroup.kill()
    seen["grandchild_exited"] = bool(select.select([grandchild], [], [], 5)[0])
    seen["kill_events"] = [dict(e) for e in logs]
    seen["returncode"] = proc.wait(timeout=10)
    seen["left_after_kill"] = sorted(cgroup.pids())
    cgroup.remove()
    seen["leaf_exists_after_remove"] = leaf.exists()

    for optional in ("no", "yes"):
        try:
            made = create_cgroup(CgroupLimits(64 << 20, None, optional), "limited",
                                 source=SOURCE)
            seen[f"limited_{optional}"] = made is not None
        except SandboxError as exc:
            seen[f"limited_{optional}"] = str(exc)
    seen["root_entries"] = sorted(p.name for p in ROOT.iterdir() if p.is_dir())
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main()
