"""Per-component cgroups: a real child under the wallet policy with small [cgroup] limits
ends up in its own cgroup, cannot outgrow its thread or memory limit, and leaves nothing
behind; an unprivileged one fails closed or warns as ``optional`` says."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from structlog.testing import capture_logs

from bitcoin_supervisor.interfaces import PolicyError
from bitcoin_supervisor.sandbox import (
    CGROUP_PARENT,
    POLICY_DIR,
    cgroup_dirs,
    cgroup_summary,
    cgroup_usage,
    load_policy,
    remove_cgroups,
)

from .conftest import NOBODY, Datadirs

# Runs the whole wallet sandbox on itself, then does ``action`` and prints one JSON line;
# it holds until stdin closes so that the test can look at it from outside.
_CHILD = r"""
import json, os, sys, threading
from pathlib import Path
from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import SupervisorError
from bitcoin_supervisor.sandbox import SandboxContext, apply, load_policy

spec = json.loads(sys.argv[1])
log.configure(json=True)
policy = load_policy("wallet", datadirs={k: Path(v) for k, v in spec["datadirs"].items()},
                     policy_dir=Path(spec["policy_dir"]))
try:
    apply(policy, SandboxContext(ipc_fd=None, name=spec["name"]))
except SupervisorError as exc:
    print(exc, file=sys.stderr, flush=True)
    sys.exit(78)
result = {"inside": open("/proc/self/cgroup").read()}
if spec["action"] == "threads":
    release, started = threading.Event(), []
    try:
        while len(started) < 1000:
            started.append(threading.Thread(target=release.wait))
            started[-1].start()
    except RuntimeError as exc:
        started.pop()
        result["error"] = str(exc)
    result["threads"] = len(started)
    release.set()
    for thread in started:
        thread.join()
elif spec["action"] == "alloc":
    chunks = [b"\x01" * (8 << 20) for _ in range(spec["mib"] // 8)]
    result["allocated_mib"] = 8 * len(chunks)
print(json.dumps(result), flush=True)
sys.stdin.readline()
"""
_MIB = 1 << 20


class Child:
    """One sandboxed child process and the name its cgroup carries."""

    def __init__(self, policy_dir: Path, dd: Datadirs, action: str, *,
                 as_nobody: bool = False, mib: int = 0) -> None:
        self.name = f"cgtest-{uuid.uuid4().hex[:8]}"
        spec = {"datadirs": dd.as_spec(), "policy_dir": str(policy_dir), "name": self.name,
                "action": action, "mib": mib}
        prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                  "--"] if as_nobody else []
        self.proc = subprocess.Popen([*prefix, sys.executable, "-c", _CHILD, json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.pid = self.proc.pid

    def result(self) -> dict[str, object] | None:
        """The child's JSON line once it has acted; None when it died first."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        return dict(json.loads(line)) if line else None

    def finish(self) -> tuple[int, str]:
        """Let the child exit; return its returncode and stderr."""
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err


@pytest.fixture
def cgroup_policies(nobody_datadirs: Datadirs) -> Iterator[Path]:
    """A copy of the shipped policies that an unprivileged child can read too."""
    target = nobody_datadirs.base.parent / "policies"
    shutil.copytree(POLICY_DIR, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    os.chmod(target, 0o755)
    yield target


def _set_cgroup(policy_dir: Path, body: str) -> None:
    path = policy_dir / "wallet.toml"
    text = path.read_text()
    text, count = re.subn(r"\[cgroup\]\n(?:(?:#.*|\w+ = .*)\n)*", f"[cgroup]\n{body}\n", text)
    assert count == 1
    path.write_text(text)


def _cgroup_of(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/cgroup", encoding="ascii") as fh:
        return {c: path for line in fh for _, cs, path in [line.strip().split(":", 2)]
                for c in cs.split(",")}


def test_child_and_its_role_join_their_own_cgroup_with_the_limits(
        cgroup_policies: Path, nobody_datadirs: Datadirs) -> None:
    _set_cgroup(cgroup_policies, 'memory_max = "96M"\npids_max = 16\noptional = false')
    child = Child(cgroup_policies, nobody_datadirs, "hold")
    try:
        result = child.result()
        assert result is not None, child.finish()
        dirs = cgroup_dirs(child.name, child.pid)
        assert set(dirs) == {"memory", "pids"}
        namespace = os.stat("/proc/self/ns/pid").st_ino  # the child's pid is one of ours
        leaf = f"/{CGROUP_PARENT}/{child.name}-{child.pid}.{namespace}"
        role = psutil.Process(child.pid).children()
        assert len(role) == 1, "the role runs as the waiter's only child"
        for pid in (child.pid, role[0].pid):
            seen = _cgroup_of(pid)
            assert seen["memory"].endswith(leaf) and seen["pids"].endswith(leaf), seen
        # The role's own cgroup namespace is rooted at its cgroup: it sees "/".
        assert "memory:/\n" in str(result["inside"])
        memory = dirs["memory"]
        limit = (memory / ("memory.max" if (memory / "memory.max").exists()
                           else "memory.limit_in_bytes")).read_text()
        assert int(limit) == 96 * _MIB
        assert (dirs["pids"] / "pids.max").read_text().strip() == "16"
        assert cgroup_usage(child.name, child.pid)["pids"] == 2  # waiter + role
    finally:
        code, err = child.finish()
    assert code == 0, err
    with capture_logs() as logs:
        remove_cgroups(child.name, child.pid)
    assert not any(path.exists() for path in dirs.values())
    assert {e["event"] for e in logs} == {"cgroup.removed"}
    remove_cgroups(child.name, child.pid)  # a second call finds nothing and is quiet


def test_pids_max_stops_a_thread_storm_inside_the_role(
        cgroup_policies: Path, nobody_datadirs: Datadirs) -> None:
    _set_cgroup(cgroup_policies, 'memory_max = "max"\npids_max = 12\noptional = false')
    child = Child(cgroup_policies, nobody_datadirs, "threads")
    try:
        result = child.result()
    finally:
        code, err = child.finish()
        remove_cgroups(child.name, child.pid)
    assert code == 0, err
    assert result is not None
    # waiter + role + threads = 12 tasks; the next thread creation fails, not the host.
    assert result["threads"] == 10
    assert "can't start new thread" in str(result["error"])


def test_memory_max_oom_kills_an_allocation_beyond_it(
        cgroup_policies: Path, nobody_datadirs: Datadirs) -> None:
    _set_cgroup(cgroup_policies, 'memory_max = "64M"\npids_max = "max"\noptional = false')
    child = Child(cgroup_policies, nobody_datadirs, "alloc", mib=512)
    try:
        result = child.result()
        code, _ = child.finish()
        usage = cgroup_usage(child.name, child.pid)
    finally:
        remove_cgroups(child.name, child.pid)
    assert result is None, "the allocation must not succeed"
    assert code == -signal.SIGKILL  # the waiter mirrors the OOM kill of the role
    assert usage["oom_kills"] == 1
    assert 32 * _MIB < usage["memory_peak_bytes"] <= 64 * _MIB


def test_unprivileged_child_fails_closed_when_limits_are_required(
        cgroup_policies: Path, nobody_datadirs: Datadirs) -> None:
    os.chmod(cgroup_policies / "wallet.toml", 0o644)
    _set_cgroup(cgroup_policies, 'memory_max = "64M"\npids_max = 16\noptional = false')
    child = Child(cgroup_policies, nobody_datadirs, "hold", as_nobody=True)
    code, err = child.finish()
    assert code == 78
    assert "cgroup limits of " + child.name in err
    assert "Permission denied" in err
    assert "set [cgroup] optional = true in " + str(cgroup_policies / "wallet.toml") in err
    assert not any(path.exists() for path in cgroup_dirs(child.name, child.pid).values())


@pytest.mark.parametrize("optional", ["true", '"unprivileged"'])
def test_unprivileged_child_warns_and_runs_when_limits_are_optional(
        cgroup_policies: Path, nobody_datadirs: Datadirs, optional: str) -> None:
    _set_cgroup(cgroup_policies, f'memory_max = "64M"\npids_max = 16\noptional = {optional}')
    child = Child(cgroup_policies, nobody_datadirs, "hold", as_nobody=True)
    try:
        result = child.result()
        seen = _cgroup_of(child.pid)
    finally:
        code, err = child.finish()
    assert code == 0 and result is not None, err
    assert CGROUP_PARENT not in seen["memory"] + seen["pids"]
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    skipped = [e for e in events if e["event"] == "cgroup.skipped"]
    assert len(skipped) == 1 and skipped[0]["level"] == "warning"
    assert "Permission denied" in skipped[0]["reason"]


def test_summary_names_the_limits_and_the_hierarchy_in_use() -> None:
    policy = load_policy("wallet", datadirs={"wallet": Path("/srv/wallet")})
    summary = cgroup_summary(policy)
    assert summary["memory_max"] == 512 * _MIB and summary["pids_max"] == 128
    assert summary["optional"] == "unprivileged"
    assert summary["version"] in ("v1", "v2", "v1+v2")
    if os.geteuid() == 0:
        assert summary["unavailable"] is None


@pytest.mark.parametrize(("role", "memory", "pids"), [
    ("node", 2 << 30, 512), ("wallet", 512 * _MIB, 128), ("index", 1 << 30, 128)])
def test_shipped_policies_limit_every_role(role: str, memory: int, pids: int) -> None:
    policy = load_policy(role, datadirs={role: Path(f"/srv/{role}")})
    assert policy.cgroup is not None
    assert (policy.cgroup.memory_max, policy.cgroup.pids_max) == (memory, pids)


@pytest.mark.parametrize(("body", "memory", "pids", "optional"), [
    ('memory_max = 134217728\npids_max = 7', 128 * _MIB, 7, "no"),
    ('memory_max = "1g"\npids_max = "max"\noptional = true', 1 << 30, None, "yes"),
    ('memory_max = "max"', None, None, "no"),
])
def test_limits_parse(cgroup_policies: Path, body: str, memory: int | None,
                      pids: int | None, optional: str) -> None:
    _set_cgroup(cgroup_policies, body)
    policy = load_policy("wallet", datadirs={"wallet": Path("/srv/wallet")},
                         policy_dir=cgroup_policies)
    assert policy.cgroup is not None
    assert (policy.cgroup.memory_max, policy.cgroup.pids_max) == (memory, pids)
    assert policy.cgroup.optional == optional


@pytest.mark.parametrize(("line", "message"), [
    ('memory_max = "12X"', "bad memory_max: '12X' is not a positive limit"),
    ("memory_max = 4096", "bad memory_max: 4096 bytes is below 1M"),
    ("pids_max = 0", "bad pids_max: 0 is not a positive limit"),
    ('pids_max = "64K"', "bad pids_max: '64K' is not a positive limit"),
    ('optional = "maybe"', "bad optional value 'maybe'"),
    ("cpu_max = 2", "unknown key 'cgroup.cpu_max'"),
    ("memory_max = true", "bad memory_max: True is not a positive limit"),
])
def test_bad_cgroup_values_point_at_their_line(cgroup_policies: Path, line: str,
                                               message: str) -> None:
    _set_cgroup(cgroup_policies, line)
    path = cgroup_policies / "wallet.toml"
    expected = path.read_text().splitlines().index(line) + 1
    with pytest.raises(PolicyError) as caught:
        load_policy("wallet", datadirs={"wallet": Path("/srv/wallet")},
                    policy_dir=cgroup_policies)
    assert message in caught.value.message
    assert (caught.value.path, caught.value.line) == (str(path), expected)
    assert caught.value.hint
