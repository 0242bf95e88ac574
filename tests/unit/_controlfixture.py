"""Sample control-protocol records shared by the control and CLI unit tests."""

from __future__ import annotations

from bitcoin_supervisor.supervisor.control_protocol import (
    CgroupSummary,
    CgroupUsage,
    ComponentStatus,
    Confinement,
    LastExit,
    SandboxSummary,
    StatusReply,
    SupervisorInfo,
)

SANDBOX = SandboxSummary(
    policy="/p/wallet.toml", namespaces=("ipc", "net", "user"), network="none",
    seccomp_default="kill_process", seccomp_allowed=168, landlock=True, capabilities=(),
    uid=64102, landlock_abi=7,
    cgroup=CgroupSummary(memory_max=512 << 20, pids_max=128, optional="unprivileged",
                         version="v1", unavailable=None,
                         usage=CgroupUsage(memory_bytes=6 << 20, pids=3)))
WALLET = ComponentStatus(
    name="wallet", role="wallet", state="active", substate="running", reason="none",
    pid=4242, restarts=1, uptime_s=12.5, since=1_700_000_000.25,
    last_exit=LastExit(exit_code=None, signal="SIGKILL", reason="signal", detail=None,
                       at=1_699_999_999.0),
    datadir="/d/wallet", sandbox=SANDBOX, confinement=Confinement.CONFIGURED)
INDEX = ComponentStatus(
    name="index", role="index", state="failed", substate="failed",
    reason="start-limit-hit", pid=None, restarts=3, uptime_s=None, since=None,
    last_exit=LastExit(exit_code=78, signal=None, reason="boot-refused",
                       detail="cannot read policy", at=1.0),
    datadir="/d/index", sandbox=None)
STATUS = StatusReply(SupervisorInfo(pid=1, uptime_s=3.0, config="/c.toml", datadir="/d"),
                     (WALLET, INDEX))
