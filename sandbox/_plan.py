"""A launch plan: everything the trampoline needs, resolved by the supervisor beforehand.

Plan, then apply (nsjail's shape): policy files, syscall groups, templates and the
program's exec chain are read and checked here, in the supervisor, before anything
irreversible happens. The trampoline receives the plan as JSON in a sealed memfd and
reads no other file (only ``/proc`` and ``/dev``) while it confines itself, so neither a
staging tmpfs over ``/tmp`` nor a 0700 directory above the checkout can hide a file from it.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from bitcoin_supervisor.interfaces import SandboxError

from ._policy import (
    ArgCompare,
    CgroupLimits,
    FilesystemView,
    LandlockRules,
    Policy,
    SeccompRules,
    SyscallRule,
)

__all__ = ["LaunchPlan", "allow_entry_execve", "decode_plan", "encode_plan", "exec_chain",
           "make_plan", "plan_fd", "read_plan_fd"]

_VERSION = 1
_PT_INTERP = 3
_FULL64 = (1 << 64) - 1


@dataclass(frozen=True)
class LaunchPlan:
    """One process's confinement, fully resolved.

    ``policy`` None means "no confinement" (``sandbox = "none"``): the trampoline then only
    binds the process's lifetime to ``parent_pid`` and executes the program. ``executable``
    is absolute but keeps symlinks (a venv's python finds its venv through its own path);
    ``exec_chain`` lists the resolved files ``execve`` opens (program, ``#!`` interpreter,
    ELF loader), which Landlock lets execute and nothing else.
    """

    name: str
    policy: Policy | None
    executable: Path
    exec_chain: tuple[Path, ...]
    cwd: Path
    parent_pid: int
    waiter: SeccompRules | None = None
    # Inherited cgroup.procs fds of the supervisor-owned cgroup, joined first.
    cgroup_fds: tuple[int, ...] = ()


def make_plan(policy: Policy | None, *, name: str, executable: Path, cwd: Path,
              parent_pid: int | None = None, cgroup_fds: tuple[int, ...] = ()) -> LaunchPlan:
    """Resolve a plan for running ``executable`` under ``policy``.

    Files of the exec chain the policy's view does not show are added to it read-only
    (the operator named the program; it must be visible to be executed). Reads file
    headers and ``policies/syscalls.toml``. Raises SandboxError (one line) when the
    program cannot be read, PolicyError when the syscall groups are broken.
    """
    try:
        chain = exec_chain(executable)
    except OSError as exc:
        raise SandboxError(f"cannot read {executable}: {exc.strerror}") from exc
    waiter = None
    if policy is not None:
        view = policy.filesystem
        roots = [Path(os.path.realpath(p)) for p in view.read_only + view.read_write]
        missing = tuple(p for p in (executable, *chain)
                        if not any(Path(os.path.realpath(p)).is_relative_to(r) for r in roots))
        if missing:
            policy = replace(policy, filesystem=replace(
                view, read_only=view.read_only + tuple(dict.fromkeys(missing))))
        if "pid" in policy.namespaces:
            # Here only: the trampoline decodes plans and must not import the loader.
            from ._loader import waiter_rules

            waiter = waiter_rules()
    return LaunchPlan(name=name, policy=policy, executable=executable, exec_chain=chain,
                      cwd=cwd, parent_pid=os.getpid() if parent_pid is None else parent_pid,
                      waiter=waiter, cgroup_fds=cgroup_fds)


def plan_fd(plan: LaunchPlan) -> int:
    """Write ``plan`` into a sealed memfd and return its descriptor (inheritable by the
    child only through ``pass_fds``; the caller closes it after spawning)."""
    data = encode_plan(plan)
    fd = os.memfd_create(f"sandbox-plan-{plan.name}",
                         os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.write(fd, data)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK
                    | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd


def read_plan_fd(fd: int) -> LaunchPlan:
    """Read and close the plan descriptor ``fd``. Raises SandboxError if malformed."""
    chunks = []
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    except OSError as exc:
        raise SandboxError(f"cannot read the launch plan (fd {fd}): {exc.strerror}") from exc
    finally:
        os.close(fd)
    return decode_plan(b"".join(chunks))


def encode_plan(plan: LaunchPlan) -> bytes:
    """The plan as JSON bytes. Pure."""
    return json.dumps({
        "version": _VERSION,
        "name": plan.name,
        "policy": None if plan.policy is None else _policy_json(plan.policy),
        "executable": str(plan.executable),
        "exec_chain": [str(p) for p in plan.exec_chain],
        "cwd": str(plan.cwd),
        "parent_pid": plan.parent_pid,
        "waiter": None if plan.waiter is None else _seccomp_json(plan.waiter),
        "cgroup_fds": list(plan.cgroup_fds),
    }, sort_keys=True).encode()


def decode_plan(data: bytes) -> LaunchPlan:
    """Parse ``encode_plan`` output. Raises SandboxError (one line) if it is malformed."""
    try:
        raw = json.loads(data)
        if raw.get("version") != _VERSION:
            raise ValueError(f"unsupported plan version {raw.get('version')!r}")
        return LaunchPlan(
            name=str(raw["name"]),
            policy=None if raw["policy"] is None else _policy(raw["policy"]),
            executable=Path(raw["executable"]),
            exec_chain=tuple(Path(p) for p in raw["exec_chain"]),
            cwd=Path(raw["cwd"]),
            parent_pid=int(raw["parent_pid"]),
            waiter=None if raw["waiter"] is None else _seccomp(raw["waiter"]),
            cgroup_fds=tuple(int(fd) for fd in raw["cgroup_fds"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SandboxError(f"malformed launch plan: {exc!r}") from exc


def _paths(items: tuple[Path, ...] | frozenset[Path]) -> list[str]:
    return [str(p) for p in items]


def _policy_json(p: Policy) -> dict[str, Any]:
    fs = p.filesystem
    return {
        "role": p.role, "source": str(p.source), "namespaces": sorted(p.namespaces),
        "hostname": p.hostname,
        "filesystem": {"read_only": _paths(fs.read_only), "read_write": _paths(fs.read_write),
                       "tmpfs": _paths(fs.tmpfs), "devices": _paths(fs.devices),
                       "proc": fs.proc, "optional": sorted(_paths(fs.optional)),
                       "executable": _paths(fs.executable)},
        "network": p.network, "capabilities": list(p.capabilities),
        "rlimits": {k: list(v) for k, v in p.rlimits.items()},
        "landlock": {"enabled": p.landlock.enabled, "tcp_bind": list(p.landlock.tcp_bind),
                     "tcp_connect": list(p.landlock.tcp_connect),
                     "scope": sorted(p.landlock.scope), "optional": p.landlock.optional},
        "seccomp": _seccomp_json(p.seccomp),
        "uid": p.uid, "gid": p.gid, "keep_fds": list(p.keep_fds), "mdwe": p.mdwe,
        "cgroup": None if p.cgroup is None else {
            "memory_max": p.cgroup.memory_max, "pids_max": p.cgroup.pids_max,
            "optional": p.cgroup.optional},
    }


def _policy(d: dict[str, Any]) -> Policy:
    fs, ll, cg = d["filesystem"], d["landlock"], d["cgroup"]
    return Policy(
        role=str(d["role"]), source=Path(d["source"]), namespaces=frozenset(d["namespaces"]),
        hostname=d["hostname"],
        filesystem=FilesystemView(
            read_only=tuple(Path(p) for p in fs["read_only"]),
            read_write=tuple(Path(p) for p in fs["read_write"]),
            tmpfs=tuple(Path(p) for p in fs["tmpfs"]),
            devices=tuple(Path(p) for p in fs["devices"]), proc=bool(fs["proc"]),
            optional=frozenset(Path(p) for p in fs["optional"]),
            executable=tuple(Path(p) for p in fs["executable"])),
        network=str(d["network"]), capabilities=tuple(d["capabilities"]),
        rlimits={k: (int(v[0]), int(v[1])) for k, v in d["rlimits"].items()},
        landlock=LandlockRules(enabled=bool(ll["enabled"]), tcp_bind=tuple(ll["tcp_bind"]),
                               tcp_connect=tuple(ll["tcp_connect"]),
                               scope=frozenset(ll["scope"]), optional=bool(ll["optional"])),
        seccomp=_seccomp(d["seccomp"]), uid=d["uid"], gid=d["gid"],
        keep_fds=tuple(int(f) for f in d["keep_fds"]), mdwe=bool(d["mdwe"]),
        cgroup=None if cg is None else CgroupLimits(memory_max=cg["memory_max"],
                                                    pids_max=cg["pids_max"],
                                                    optional=str(cg["optional"])))


def _seccomp_json(s: SeccompRules) -> dict[str, Any]:
    return {
        "default_action": s.default_action, "allow": sorted(s.allow), "errno": dict(s.errno),
        "rules": [{"syscall": r.syscall, "action": r.action,
                   "args": [[a.index, a.mask, a.value] for a in r.args]} for r in s.rules],
        "groups": list(s.groups), "justification": dict(s.justification),
    }


def _seccomp(d: dict[str, Any]) -> SeccompRules:
    return SeccompRules(
        default_action=str(d["default_action"]), allow=frozenset(d["allow"]),
        errno={str(k): int(v) for k, v in d["errno"].items()},
        rules=tuple(SyscallRule(syscall=str(r["syscall"]), action=str(r["action"]),
                                args=tuple(ArgCompare(int(i), int(m), int(v))
                                           for i, m, v in r["args"]))
                    for r in d["rules"]),
        groups=tuple(d["groups"]), justification=dict(d["justification"]))


def exec_chain(executable: Path) -> tuple[Path, ...]:
    """Return the files ``execve(executable)`` makes the kernel open: the file itself,
    the interpreter of a ``#!`` script (recursively) and an ELF program's PT_INTERP (the
    dynamic loader), fully resolved. Reads file headers only; OSError if unreadable."""
    chain: list[Path] = []
    current: Path | None = Path(os.path.realpath(executable))
    while current is not None and current not in chain and len(chain) < 5:
        chain.append(current)
        with open(current, "rb") as fh:
            head = fh.read(256)
            if head.startswith(b"#!"):
                words = head[2:].split(b"\n", 1)[0].split()
                current = Path(os.path.realpath(os.fsdecode(words[0]))) if words else None
            elif head.startswith(b"\x7fELF"):
                interp = _elf_interpreter(fh, head)
                current = Path(os.path.realpath(interp)) if interp else None
            else:
                current = None
    return tuple(chain)


def _elf_interpreter(fh: BinaryIO, head: bytes) -> str | None:
    """PT_INTERP of an ELF file (32 or 64 bit, either byte order), or None (static)."""
    wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
    if wide:
        phoff, = struct.unpack_from(order + "Q", head, 0x20)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 0x36)
    else:
        phoff, = struct.unpack_from(order + "I", head, 0x1C)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 0x2A)
    fh.seek(phoff)
    table = fh.read(phentsize * phnum)
    for index in range(phnum):
        entry = table[index * phentsize:(index + 1) * phentsize]
        kind, = struct.unpack_from(order + "I", entry, 0)
        if kind != _PT_INTERP:
            continue
        # p_offset and p_filesz: at 8 and 32 in an Elf64_Phdr, at 4 and 16 in Elf32.
        field, at_offset, at_size = ("Q", 8, 32) if wide else ("I", 4, 16)
        offset, = struct.unpack_from(order + field, entry, at_offset)
        size, = struct.unpack_from(order + field, entry, at_size)
        fh.seek(offset)
        return os.fsdecode(fh.read(size).rstrip(b"\0"))
    return None


def allow_entry_execve(policy: Policy, filename_address: int,
                       executables: tuple[Path, ...]) -> Policy:
    """Return ``policy`` opened just enough for one entry ``execve``. Pure.

    Seccomp gains one rule: ``execve`` is allowed when its filename pointer equals
    ``filename_address`` (64-bit compare). Landlock lets ``execve`` open exactly
    ``executables`` (see ``exec_chain``); every other file stays non-executable.
    """
    view = replace(policy.filesystem,
                   executable=policy.filesystem.executable + executables)
    if "execve" in policy.seccomp.allow:
        return replace(policy, filesystem=view)
    rule = SyscallRule(syscall="execve", action="allow",
                       args=(ArgCompare(index=0, mask=_FULL64, value=filename_address),))
    return replace(policy, filesystem=view, seccomp=replace(
        policy.seccomp, rules=policy.seccomp.rules + (rule,)))
