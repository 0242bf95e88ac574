"""A role's fork server (Chromium's zygote): a template process that has imported the role
and the sandbox and compiled its filters, and forks one confined child per spawn request.

Started by the supervisor as ``python -I -m bitcoin_supervisor.sandbox._forkserver
--control-fd C --entry MODULE:FUNC --parent PID [--no-network]``; the control socket (a
SOCK_SEQPACKET socketpair, see ``_forkwire``) is its only channel, and only the supervisor
holds the other end. Each child: its own fds only (IPC, stdout, stderr, plan, cgroup fds,
received with SCM_RIGHTS; everything else closed), a fresh ``random`` seed (the kernel's
``os.urandom`` is never shared), its own session, cgroup and namespaces (the template is
single-threaded and holds no event loop or capnp state, so unshare and fork are safe), the
same ``confine`` the trampoline runs, then the role's entry function in-process.
Each child is forked as the *supervisor's* child, not the template's (clone3 with
CLONE_PARENT): the supervisor waits for it with the pidfd sent back, so its exit status
(a configuration failure's 78, a crash's signal) reaches the supervisor from the kernel
whether or not the template is alive when it exits, and it is reaped there (no zombie).
The alternatives hold less when the template is SIGKILLed first: its own reports die with
it; a status written by the child at exit misses its own SIGKILL and leaves the orphan
to PID 1 (which reaps nothing on some machines); PR_SET_CHILD_SUBREAPER on the
supervisor makes it the parent of every orphan of its tree, which asyncio's per-pid
watchers never reap. Its lifetime is bound to the supervisor like a cold child's.

No execve, and how that squares with the pinned-execve rule: the trampoline allows exactly
one execve (of the planned program) and the fork child allows none at all (its filter gets
no execve rule), so it is strictly tighter. The code it runs is the role's entry point the
supervisor resolved from the same console script the cold path would execute, imported by
the template before confinement from the same installation.

The template itself, as far as a forking parent can be confined: lifetime bound to the
supervisor (PDEATHSIG), no_new_privs, every fd but stdio and the control socket closed,
as root its own network namespace when the role has no network and only the capabilities
the children's confinement needs (mounting the view, dropping to the role's uid, chowning
its datadir; see ``TEMPLATE_CAPABILITIES``). It keeps the host pid namespace (its
children's pids must be the supervisor's) and no seccomp filter (each child installs its
own; a parent's filter would be inherited and stack under it).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import random
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import SupervisorError

from . import _forkwire as wire
from ._caps import limit_capabilities, set_no_new_privs
from ._libc import clone_sibling, unshare
from ._lifetime import bind_to_parent
from ._namespaces import close_fds
from ._plan import LaunchPlan, _seccomp_json, read_plan_fd
from ._seccomp import SeccompFilter, build_filter
from ._trampoline import EXIT_SANDBOX_FAILED, confine

__all__ = ["TEMPLATE_CAPABILITIES", "main"]

# What ``apply`` needs as root: chown the datadir, stage the view below 0700 directories
# and mount it, drop to the role's uid, shed the rest. No CAP_NET_*, CAP_SYS_PTRACE,
# CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_MKNOD, CAP_SYS_TIME, CAP_AUDIT_*, CAP_BPF...
TEMPLATE_CAPABILITIES = ("chown", "dac_override", "dac_read_search", "fowner", "fsetid",
                         "setuid", "setgid", "setpcap", "sys_admin", "sys_chroot",
                         "sys_resource", "kill")
_CLONE_NEWNET = 0x40000000
_PREFIX = "bitcoin-supervisor fork server"


class _Template:
    """The template's state: its control socket, the entry, compiled filters by policy."""

    def __init__(self, control: socket.socket, entry: Callable[[], object]) -> None:
        self.control = control
        self.entry = entry
        self.filters: dict[str, tuple[SeccompFilter, SeccompFilter | None]] = {}

    def filters_for(self, plan: LaunchPlan) -> tuple[SeccompFilter, SeccompFilter | None] | None:
        """Compile (once per distinct policy) the filters ``plan`` needs, before forking."""
        if plan.policy is None:
            return None
        key = json.dumps([_seccomp_json(plan.policy.seccomp),
                          None if plan.waiter is None else _seccomp_json(plan.waiter)])
        if key not in self.filters:
            waiter = build_filter(plan.waiter) if plan.waiter is not None else None
            self.filters[key] = (build_filter(plan.policy.seccomp), waiter)
        return self.filters[key]

    def serve(self) -> NoReturn:
        """Answer spawn requests until the supervisor closes the link. Its children are
        the supervisor's (CLONE_PARENT): nothing to reap here."""
        try:
            while True:
                message = wire.receive(self.control)
                if message is None:
                    os._exit(0)  # the supervisor let go
                if message.op == "spawn":
                    self.spawn(message)
                else:
                    for fd in message.fds:
                        os.close(fd)
        except (BrokenPipeError, ConnectionResetError):
            os._exit(0)  # the supervisor let go

    def spawn(self, message: wire.Message) -> None:
        """Fork one child for ``message``; answer ``spawned`` (with its pidfd) or
        ``failed``. Never raises (a bad request fails that request only)."""
        fds, ident = message.fds, message.fields.get("id")
        try:
            if len(fds) < 4:
                raise ValueError(f"spawn needs at least 4 fds, got {len(fds)}")
            ipc, out, err, plan_fd, *cgroup = fds
            # An introduction channel (supervisor/_introduce.py) comes right after the
            # plan, and the child learns its number from the variable the request names.
            intro_env = message.fields.get("intro_env")
            intro = cgroup.pop(0) if intro_env is not None and cgroup else None
            plan = read_plan_fd(plan_fd)
            plan = replace(plan, cgroup_fds=tuple(cgroup))
            argv = [str(a) for a in message.fields["argv"]]
            env = {str(k): str(v) for k, v in message.fields["env"].items()}
            if intro is not None:
                env[str(intro_env)] = str(intro)
            filters = self.filters_for(plan)
            pid, pidfd = clone_sibling()
        except (ValueError, KeyError, TypeError, AttributeError, SupervisorError,
                OSError) as exc:  # OSError: clone3 itself (EAGAIN, ENOMEM, ENOSYS)
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            wire.send(self.control, "failed", id=ident, error=str(exc))
            return
        if pid == 0:
            self.child(plan, argv, env, ipc, out, err, filters, intro)
        for fd in (ipc, out, err, *cgroup, *((intro,) if intro is not None else ())):
            os.close(fd)
        try:
            wire.send(self.control, "spawned", (pidfd,), id=ident, pid=pid)
        finally:
            os.close(pidfd)

    def child(self, plan: LaunchPlan, argv: list[str], env: dict[str, str], ipc: int,
              out: int, err: int, filters: tuple[SeccompFilter, SeccompFilter | None] | None,
              intro: int | None = None) -> NoReturn:
        """The forked child: shed the template, confine, run the role. Never returns."""
        code = EXIT_SANDBOX_FAILED
        try:
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            self.control.close()
            os.dup2(out, 1)
            os.dup2(err, 2)
            os.close(out)
            os.close(err)
            os.setsid()
            random.seed()  # the clone copied the template's state (no at-fork reseed ran)
            os.environ.clear()
            os.environ.update(env)
            argv = [a.replace("{fd}", str(ipc)) for a in argv]
            keep = (ipc,) if intro is None else (ipc, intro)
            confine(plan, plan.policy, ipc_fd=ipc, keep=keep, filters=filters)
            os.chdir(plan.cwd)
            sys.argv = argv
            self.entry()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except (SupervisorError, OSError) as exc:
            os.write(2, f"{_PREFIX}: {plan.name}: {exc}\n".encode())
        except BaseException:  # the boundary: this child must never return to the loop
            traceback.print_exc()
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


def _load_entry(entry: str) -> Callable[[], object]:
    """Import ``module:function`` and whatever the role imports lazily once it runs (the
    capnp protocol and its schemas, structlog), so that no child pays for it."""
    # Which entries are ours is the supervisor's call (``role_entry``); only it can start
    # a template.
    module, _, name = entry.partition(":")
    if not module or not name:
        raise ValueError(f"not an entry point (module:function): {entry!r}")
    func = getattr(importlib.import_module(module), name)
    # The roles' shared start-up (schemas, logging), by name like the entry: the sandbox
    # layer does not import roles or ipc.
    preload = getattr(importlib.import_module("bitcoin_supervisor.roles._main"), "preload",
                      None)
    if callable(preload):
        preload()
    if not callable(func):
        raise ValueError(f"{entry!r} is not callable")
    return func  # type: ignore[no-any-return]


def _single_threaded() -> bool:
    with open("/proc/self/status", encoding="ascii") as fh:
        return any(line.split() == ["Threads:", "1"] for line in fh)


def main(args: list[str] | None = None) -> NoReturn:
    """Run a template until the supervisor closes the control socket. Exit 125 (one line
    on stderr) when it cannot be prepared."""
    parser = argparse.ArgumentParser(prog="python -m bitcoin_supervisor.sandbox._forkserver")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--entry", required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--no-network", action="store_true")
    ns = parser.parse_args(args)
    log.configure_light()
    try:
        bind_to_parent(ns.parent)
        control = socket.socket(fileno=ns.control_fd)
        close_fds({0, 1, 2, ns.control_fd})
        entry = _load_entry(ns.entry)
        if not _single_threaded():
            raise ValueError("the template must stay single-threaded (fork and unshare)")
        if ns.no_network and os.geteuid() == 0:
            # Unprivileged, a network namespace needs a user namespace first, which would
            # nest every child's own; such a template keeps the host network (its children
            # still get their own).
            unshare(_CLONE_NEWNET)
        set_no_new_privs()
        if os.geteuid() == 0:
            limit_capabilities(TEMPLATE_CAPABILITIES)
    except (SupervisorError, OSError, ValueError, ImportError) as exc:
        os.write(2, f"{_PREFIX}: {ns.entry}: {exc}\n".encode())
        os._exit(EXIT_SANDBOX_FAILED)
    log.get_logger().info("fork_server.ready", entry=ns.entry, pid=os.getpid(),
                          network=not ns.no_network, path=str(Path(sys.executable)))
    wire.send(control, "ready", pid=os.getpid())
    _Template(control, entry).serve()


if __name__ == "__main__":
    main()
