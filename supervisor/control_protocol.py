"""The control protocol, defined once: requests, status records, error codes and their JSON.

The daemon builds these records and the CLI reads them, so a field is added, renamed or
retyped in one place. Wire format: one JSON object per line each way; a request is
``{"verb": ..., ...}``, a reply ``{"ok": true, ...}`` or ``{"ok": false, "error": "<one
line>", "code": <ErrorCode>}``. ``from_json`` validates everything it reads and raises one
``ProtocolError`` naming the offending field (``components[1].sandbox.uid: expected an
integer or null, got string``). Stdlib only and cheap to import: every CLI call loads it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from ._jsonread import ControlError, Obj, ProtocolError, Record, plain

__all__ = [
    "CONTROL_SOCKET",
    "Accepted",
    "CgroupSummary",
    "CgroupUsage",
    "ComponentReply",
    "ComponentRequest",
    "CapabilityLink",
    "ComponentStatus",
    "Confinement",
    "DiskStatus",
    "ControlError",
    "ErrorCode",
    "ErrorReply",
    "HealthSummary",
    "LastExit",
    "ProtocolError",
    "ReloadReply",
    "ReloadRequest",
    "Reply",
    "Request",
    "RestartRequest",
    "SandboxSummary",
    "ShutdownRequest",
    "StartRequest",
    "StatusReply",
    "StatusRequest",
    "StopRequest",
    "SupervisorInfo",
    "SyncProgress",
    "Verb",
    "parse_reply",
    "parse_request",
]

# The socket's name inside the daemon's datadir.
CONTROL_SOCKET = "supervisor.sock"


class ErrorCode(enum.IntEnum):
    """Why a request failed: the one set of codes both ends use (HTTP-like, so they read
    naturally in logs and scripts). The CLI maps them to its exit codes."""

    BAD_REQUEST = 400        # malformed request: not JSON, unknown verb or key, wrong type
    FORBIDDEN = 403          # the peer's uid may not use the socket
    UNKNOWN_COMPONENT = 404  # no component has that name
    TIMEOUT = 408            # no complete request line within the server's time limit
    COMPONENT_FAILED = 409   # the component did not reach the state the verb asked for
    TOO_LARGE = 413          # request line longer than the server's limit
    BAD_CONFIG = 422         # reload: the config file is invalid; the old one keeps running
    INTERNAL = 500           # the daemon hit a bug answering; see its log
    BUSY = 503               # too many control connections open at once; try again


class Verb(enum.StrEnum):
    """The verbs the daemon answers."""

    STATUS = "status"
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    SHUTDOWN = "shutdown"
    RELOAD = "reload"


class Confinement(enum.StrEnum):
    """What ``status`` may claim about a component's confinement: never more than was
    checked."""

    NONE = "none"              # no sandbox policy: the program runs unconfined
    CONFIGURED = "configured"  # a policy is configured; its effect was not verified
    ENFORCED = "enforced"      # the policy was verified in force from /proc
    VIOLATED = "violated"      # /proc showed otherwise: the component was killed



# -- status records ------------------------------------------------------------------------

@dataclass(frozen=True)
class SupervisorInfo(Record):
    """The daemon itself: pid, seconds since it started, its config file and datadir."""

    pid: int
    uptime_s: float
    config: str
    datadir: str

    @classmethod
    def from_json(cls, value: object, where: str = "supervisor") -> SupervisorInfo:
        """Read and validate; raises ProtocolError naming the bad field."""
        o = Obj(value, where)
        return cls(pid=o.get("pid", int), uptime_s=o.get("uptime_s", float),
                   config=o.get("config", str), datadir=o.get("datadir", str))


@dataclass(frozen=True)
class LastExit(Record):
    """How a component's last process ended. ``signal`` is a name (``"SIGKILL"``);
    ``exit_code`` and ``signal`` are both None when no process ran (spawn failed)."""

    exit_code: int | None
    signal: str | None
    reason: str          # an ExitReason value, e.g. "boot-refused"
    detail: str | None   # e.g. "killed by sandbox: syscall socket"
    at: float            # wall clock

    @classmethod
    def from_json(cls, value: object, where: str = "last_exit") -> LastExit:
        """Read and validate; raises ProtocolError naming the bad field."""
        o = Obj(value, where)
        return cls(exit_code=o.maybe("exit_code", int), signal=o.maybe("signal", str),
                   reason=o.get("reason", str), detail=o.maybe("detail", str),
                   at=o.get("at", float))


@dataclass(frozen=True)
class CgroupUsage(Record):
    """What a running component's cgroups hold now; None where the host does not say."""

    memory_bytes: int | None = None
    memory_peak_bytes: int | None = None
    oom_kills: int | None = None
    pids: int | None = None

    @classmethod
    def from_json(cls, value: object, where: str = "usage") -> CgroupUsage:
        """Read and validate (every key may be absent); raises ProtocolError."""
        o = Obj(value, where)
        return cls(**{f.name: o.maybe(f.name, int, optional=True) for f in fields(cls)})


@dataclass(frozen=True)
class CgroupSummary(Record):
    """A component's cgroup limits (None = no limit) and whether this host can apply
    them (``unavailable`` says why not); ``usage`` only while it runs."""

    memory_max: int | None
    pids_max: int | None
    optional: str | None  # the policy's [cgroup] optional: "no", "yes" or "unprivileged"
    version: str | None
    unavailable: str | None
    usage: CgroupUsage | None = None

    @classmethod
    def from_json(cls, value: object, where: str = "cgroup") -> CgroupSummary:
        """Read and validate; raises ProtocolError naming the bad field."""
        o = Obj(value, where)
        return cls(memory_max=o.maybe("memory_max", int), pids_max=o.maybe("pids_max", int),
                   optional=o.maybe("optional", str), version=o.maybe("version", str),
                   unavailable=o.maybe("unavailable", str),
                   usage=o.record("usage", CgroupUsage.from_json, optional=True))


@dataclass(frozen=True)
class SandboxSummary(Record):
    """The sandbox policy a component runs under, as configured (see ``Confinement`` for
    what was verified). ``uid`` is None where the policy's outer uid does not apply (the
    daemon is not root); ``landlock_abi`` None where the kernel has no Landlock."""

    policy: str
    namespaces: tuple[str, ...]
    network: str
    seccomp_default: str
    seccomp_allowed: int
    landlock: bool
    capabilities: tuple[str, ...]
    uid: int | None
    landlock_abi: int | None
    cgroup: CgroupSummary

    @classmethod
    def from_json(cls, value: object, where: str = "sandbox") -> SandboxSummary:
        """Read and validate; raises ProtocolError naming the bad field."""
        o = Obj(value, where)
        cgroup = o.record("cgroup", CgroupSummary.from_json)
        assert cgroup is not None  # not nullable: record() raised otherwise
        return cls(policy=o.get("policy", str), namespaces=o.strings("namespaces"),
                   network=o.get("network", str),
                   seccomp_default=o.get("seccomp_default", str),
                   seccomp_allowed=o.get("seccomp_allowed", int),
                   landlock=o.get("landlock", bool), capabilities=o.strings("capabilities"),
                   uid=o.maybe("uid", int), landlock_abi=o.maybe("landlock_abi", int),
                   cgroup=cgroup)


@dataclass(frozen=True)
class HealthSummary(Record):
    """The health checks of the current run: which ``check`` ("echo", "construct"),
    how many ``passed`` since it started, and how long ago the last one answered
    (None before the first). A failed check ends the run, so none is counted here."""

    check: str
    passed: int
    last_ok_age_s: float | None

    @classmethod
    def from_json(cls, value: object, where: str = "health") -> HealthSummary:
        """Read and validate; raises ProtocolError naming the bad field."""
        o = Obj(value, where)
        return cls(check=o.get("check", str), passed=o.get("passed", int),
                   last_ok_age_s=o.maybe("last_ok_age_s", float))


@dataclass(frozen=True)
class StandbyStatus(Record):
    """A component's warm standby (``standby = true``): its ``pid`` (None while none
    exists: being started, or replaced after a loss), whether it is ``ready`` to be
    promoted (verified, Init bootstrapped, its capabilities prepared), and the memory of
    its own cgroup (None where unknown)."""

    pid: int | None
    ready: bool
    memory_bytes: int | None = None

    @classmethod
    def from_json(cls, value: object, where: str = "standby") -> StandbyStatus:
        """Read and validate; raises ProtocolError naming the bad field."""
        o = Obj(value, where)
        return cls(pid=o.maybe("pid", int), ready=o.get("ready", bool),
                   memory_bytes=o.maybe("memory_bytes", int, optional=True))


@dataclass(frozen=True)
class SyncProgress(Record):
    """How far a consumer has followed its provider's chain: ``height`` it has processed
    (its lowest wallet's; None when it has none), the provider's ``tip``, ``synced`` when
    it is there. Attached (running) and synced are separate facts."""

    height: int | None
    tip: int | None
    synced: bool

    @classmethod
    def from_json(cls, value: object, where: str = "sync") -> SyncProgress:
        """Read and validate; raises ProtocolError naming the bad field."""
        o = Obj(value, where)
        return cls(height=o.maybe("height", int), tip=o.maybe("tip", int),
                   synced=o.get("synced", bool))


@dataclass(frozen=True)
class CapabilityLink(Record):
    """How one capability a consumer holds reaches it: ``path`` "introduced" (a direct
    link to ``provider``; the supervisor is out of the data path) or "forwarded"
    (through the supervisor); ``lagging`` when the provider reports the consumer behind
    on its notifications (None: not known)."""

    capability: str
    provider: str
    path: str
    lagging: bool | None = None

    @classmethod
    def from_json(cls, value: object, where: str = "link") -> CapabilityLink:
        """Read and validate; raises ProtocolError naming the bad field."""
        o = Obj(value, where)
        return cls(capability=o.get("capability", str), provider=o.get("provider", str),
                   path=o.get("path", str), lagging=o.maybe("lagging", bool, optional=True))

    @classmethod
    def many(cls, o: Obj, key: str) -> tuple[CapabilityLink, ...]:
        """The optional array ``key`` of ``o`` (absent: none)."""
        items = o.maybe(key, list, optional=True) or []
        return tuple(cls.from_json(item, f"{o.path(key)}[{i}]") for i, item in enumerate(items))


@dataclass(frozen=True)
class DiskStatus(Record):
    """A component's disk budget (its datadir's loop-mounted image) and what it holds.
    ``enforced`` False: no budget, and ``note`` says why ("disk_budget = none", "loop
    mounts need root ..."); the numbers are then null. ``size_bytes`` is what the image's
    filesystem can hold (the budget less ext4's own metadata); ``full``: a write is
    likely to fail with ENOSPC (under 1 MiB or no inode left)."""

    enforced: bool
    budget_bytes: int | None = None
    size_bytes: int | None = None
    used_bytes: int | None = None
    budget_inodes: int | None = None
    used_inodes: int | None = None
    full: bool = False
    note: str | None = None

    @classmethod
    def from_json(cls, value: object, where: str = "disk") -> DiskStatus:
        """Read and validate; raises ProtocolError naming the bad field."""
        o = Obj(value, where)
        return cls(enforced=o.get("enforced", bool),
                   budget_bytes=o.maybe("budget_bytes", int),
                   size_bytes=o.maybe("size_bytes", int),
                   used_bytes=o.maybe("used_bytes", int),
                   budget_inodes=o.maybe("budget_inodes", int),
                   used_inodes=o.maybe("used_inodes", int), full=o.get("full", bool),
                   note=o.maybe("note", str))


@dataclass(frozen=True)
class ComponentStatus(Record):
    """One component as ``status`` shows it: the public ``state`` (systemd's active
    states), the detailed ``substate``, the ``reason`` of the last change, its process,
    how it last exited and its sandbox."""

    name: str
    role: str | None  # None: a program that is none of our roles
    state: str      # a PublicState value: active, activating, deactivating, inactive, failed
    substate: str   # a ComponentState value, e.g. "stop-sigterm"
    reason: str     # an ExitReason value; "none" when there is nothing to say
    pid: int | None
    restarts: int
    uptime_s: float | None
    since: float | None  # wall clock of the last state change
    last_exit: LastExit | None
    datadir: str
    sandbox: SandboxSummary | None
    confinement: Confinement = Confinement.NONE
    # What /proc showed (ENFORCED: uid, seccomp, ...) or what did not hold (VIOLATED).
    confinement_detail: str | None = None
    # Running, but a dependency is not: "node failed (start-limit-hit)". The substate
    # then says "degraded" (it will not come back by itself) or "waiting" (it is coming).
    degraded: str | None = None
    sync: SyncProgress | None = None  # consumers of a chain only, while running
    links: tuple[CapabilityLink, ...] = ()  # consumers only, while running
    disk: DiskStatus | None = None
    disk_full: bool = False  # its filesystem is full (disk.full), shown in the state line
    health: HealthSummary | None = None  # while running, with a health check configured
    standby: StandbyStatus | None = None  # with standby = true only

    @classmethod
    def from_json(cls, value: object, where: str = "component") -> ComponentStatus:
        """Read and validate; raises ProtocolError naming the bad field."""
        o = Obj(value, where)
        return cls(name=o.get("name", str), role=o.maybe("role", str),
                   state=o.get("state", str), substate=o.get("substate", str),
                   reason=o.get("reason", str), pid=o.maybe("pid", int),
                   restarts=o.get("restarts", int), uptime_s=o.maybe("uptime_s", float),
                   since=o.maybe("since", float),
                   last_exit=o.record("last_exit", LastExit.from_json, nullable=True),
                   datadir=o.get("datadir", str),
                   sandbox=o.record("sandbox", SandboxSummary.from_json, nullable=True),
                   confinement=o.choice("confinement", Confinement),
                   confinement_detail=o.maybe("confinement_detail", str, optional=True),
                   degraded=o.maybe("degraded", str, optional=True),
                   sync=o.record("sync", SyncProgress.from_json, nullable=True,
                                 optional=True),
                   links=CapabilityLink.many(o, "links"),
                   disk=o.record("disk", DiskStatus.from_json, nullable=True, optional=True),
                   disk_full=bool(o.maybe("disk_full", bool, optional=True)),
                   health=o.record("health", HealthSummary.from_json, nullable=True,
                                   optional=True),
                   standby=o.record("standby", StandbyStatus.from_json, nullable=True,
                                    optional=True))


# -- requests ------------------------------------------------------------------------------

@dataclass(frozen=True)
class StatusRequest(Record):
    """Every component, or only ``name``. Answered by StatusReply."""

    name: str | None = None
    verb: ClassVar[Verb] = Verb.STATUS


@dataclass(frozen=True)
class StartRequest(Record):
    """Start ``name``; answered (ComponentReply) once it runs or has failed."""

    name: str
    verb: ClassVar[Verb] = Verb.START


@dataclass(frozen=True)
class StopRequest(Record):
    """Stop ``name``; answered (ComponentReply) once it has stopped."""

    name: str
    verb: ClassVar[Verb] = Verb.STOP


@dataclass(frozen=True)
class RestartRequest(Record):
    """Restart ``name`` alone; answered (ComponentReply) once it runs or has failed."""

    name: str
    verb: ClassVar[Verb] = Verb.RESTART


@dataclass(frozen=True)
class ShutdownRequest(Record):
    """Stop every component and the daemon; answered (Accepted) before it begins."""

    verb: ClassVar[Verb] = Verb.SHUTDOWN


@dataclass(frozen=True)
class ReloadRequest(Record):
    """Re-read the config file and apply the difference; answered (ReloadReply) once
    added and changed components have settled, or ErrorReply(BAD_CONFIG) when the file
    is invalid (nothing changed then)."""

    verb: ClassVar[Verb] = Verb.RELOAD


ComponentRequest = StartRequest | StopRequest | RestartRequest
Request = (StatusRequest | StartRequest | StopRequest | RestartRequest | ShutdownRequest
           | ReloadRequest)

_REQUESTS: dict[Verb, type[Request]] = {
    cls.verb: cls
    for cls in (StatusRequest, StartRequest, StopRequest, RestartRequest, ShutdownRequest,
                ReloadRequest)}


def request_to_json(request: Request) -> dict[str, Any]:
    """Return ``request`` as its wire object: ``{"verb": ..., <its fields>}``."""
    return {"verb": request.verb.value, **request.to_json()}


def parse_request(value: object) -> Request:
    """Read a request object. Raises ProtocolError (not an object, unknown verb, unknown
    or missing key, wrong type), naming the field."""
    o = Obj(value, "")
    verb = o.choice("verb", Verb)
    cls = _REQUESTS[verb]
    o.only(("verb", *(f.name for f in fields(cls))))
    if cls is ShutdownRequest:
        return ShutdownRequest()
    if cls is ReloadRequest:
        return ReloadRequest()
    if cls is StatusRequest:
        return StatusRequest(name=o.maybe("name", str, optional=True))
    return cls(name=o.get("name", str))  # type: ignore[call-arg]


# -- replies -------------------------------------------------------------------------------

@dataclass(frozen=True)
class StatusReply:
    """The answer to StatusRequest."""

    supervisor: SupervisorInfo
    components: tuple[ComponentStatus, ...]

    def to_json(self) -> dict[str, Any]:
        """The wire object; without ``ok`` it is exactly what ``status --json`` prints."""
        return {"ok": True, **plain(self)}

    @classmethod
    def from_json(cls, value: object, where: str = "") -> StatusReply:
        """Read and validate; raises ProtocolError naming the bad field."""
        o = Obj(value, where)
        supervisor = o.record("supervisor", SupervisorInfo.from_json)
        assert supervisor is not None
        items = o.get("components", list)
        return cls(supervisor=supervisor, components=tuple(
            ComponentStatus.from_json(item, o.path(f"components[{i}]"))
            for i, item in enumerate(items)))


@dataclass(frozen=True)
class ComponentReply:
    """The answer to start/stop/restart that reached its goal: the component now."""

    component: ComponentStatus

    def to_json(self) -> dict[str, Any]:
        """The wire object."""
        return {"ok": True, "component": self.component.to_json()}

    @classmethod
    def from_json(cls, value: object, where: str = "") -> ComponentReply:
        """Read and validate; raises ProtocolError naming the bad field."""
        component = Obj(value, where).record("component", ComponentStatus.from_json)
        assert component is not None
        return cls(component=component)


@dataclass(frozen=True)
class Accepted:
    """The answer to a request that has nothing to report (shutdown)."""

    def to_json(self) -> dict[str, Any]:
        """The wire object."""
        return {"ok": True}

    @classmethod
    def from_json(cls, value: object, where: str = "") -> Accepted:
        """Read and validate; raises ProtocolError if it is not an object."""
        Obj(value, where)
        return cls()


@dataclass(frozen=True)
class ReloadReply:
    """The answer to a reload that applied: component names by what happened to them
    (each in the new config's dependency order; ``removed`` in the old one's)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The wire object."""
        return {"ok": True, **plain(self)}

    @classmethod
    def from_json(cls, value: object, where: str = "") -> ReloadReply:
        """Read and validate; raises ProtocolError naming the bad field."""
        o = Obj(value, where)
        return cls(added=o.strings("added"), removed=o.strings("removed"),
                   changed=o.strings("changed"), unchanged=o.strings("unchanged"))


@dataclass(frozen=True)
class ErrorReply:
    """A refused or failed request: ``error`` is one line for a human. ``component`` is
    the component's state when a verb ran but missed its goal (COMPONENT_FAILED)."""

    code: ErrorCode
    error: str
    component: ComponentStatus | None = None

    def to_json(self) -> dict[str, Any]:
        """The wire object (``component`` only when there is one)."""
        out: dict[str, Any] = {"ok": False, "error": self.error, "code": self.code.value}
        if self.component is not None:
            out["component"] = self.component.to_json()
        return out

    @classmethod
    def from_json(cls, value: object, where: str = "") -> ErrorReply:
        """Read and validate; raises ProtocolError naming the bad field."""
        o = Obj(value, where)
        return cls(code=o.choice("code", ErrorCode), error=o.get("error", str),
                   component=o.record("component", ComponentStatus.from_json,
                                      optional=True))


Reply = StatusReply | ComponentReply | Accepted | ReloadReply | ErrorReply

_REPLIES: dict[Verb, Callable[[object, str], Reply]] = {
    Verb.STATUS: StatusReply.from_json, Verb.START: ComponentReply.from_json,
    Verb.STOP: ComponentReply.from_json, Verb.RESTART: ComponentReply.from_json,
    Verb.SHUTDOWN: Accepted.from_json, Verb.RELOAD: ReloadReply.from_json,
}


def parse_reply(request: Request, value: object) -> Reply:
    """Read the daemon's reply to ``request``: an ErrorReply when ``ok`` is false, else
    the verb's own reply type. Unknown keys are ignored (a newer daemon may add some).
    Raises ProtocolError naming the field that is missing or mistyped."""
    o = Obj(value, "")
    if not o.get("ok", bool):
        return ErrorReply.from_json(value, "")
    return _REPLIES[request.verb](value, "")
