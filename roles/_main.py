"""The process entry point shared by the reference roles: ``<exe> -ipcfd N``, then serve."""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
import sys
from collections.abc import Callable
from typing import Protocol as TypingProtocol

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import ComponentSettings, Init, SupervisorError
from bitcoin_supervisor.ipc import IntroInbox, Protocol, make_protocol, serve_listener

from ._intro import IntroducingInit
from ._standby import StandbyInit

# Reserved exit codes the supervisor reads (gunicorn's idea): a component that cannot
# boot because of how it was started must not be restarted in a loop.
EXIT_OK = 0
EXIT_LINK_LOST = 1
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL: could not start this time; an ordinary, restarted failure
EXIT_CONFIG = 78  # EX_CONFIG: cannot start with these settings, ever; never restarted

# OSErrors that say the settings themselves cannot work: a path or address that does
# not exist here, a permission the role will never have. Anything else (a busy port, a
# full disk, no memory, too many open files, an I/O error) may pass: the supervisor
# restarts the component with backoff, and its start limit ends a loop that persists.
_CONFIG_ERRNOS = frozenset({
    errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EISDIR,
    errno.ELOOP, errno.ENAMETOOLONG, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT,
    errno.EINVAL,
})


class RoleProcess(TypingProtocol):
    """What a role provides to the entry point."""

    stop_requested: asyncio.Event
    # Sockets (listening, made by ``start``) on which the same Init is served to any
    # client besides the inherited link: the node's ``ipcbind = "unix"``.
    listeners: list[socket.socket]

    async def start(self, settings: ComponentSettings) -> Init:
        """Open the role's state and return the Init to serve on the IPC link."""
        ...

    async def stop(self) -> None:
        """Flush and close everything; called once before the process exits."""
        ...


def preload() -> None:
    """Do now what every role does lazily at start: parse the capnp schemas (cached per
    process) and import structlog. A fork server calls this before forking, so that no
    child pays for it. Blocks for a few ms; raises nothing a healthy install raises."""
    make_protocol()
    log.configure(json=True)


def parse_ipcfd(argv: list[str]) -> int:
    """Return N from exactly ``-ipcfd N`` (Bitcoin Core's convention); ValueError otherwise."""
    if len(argv) != 2 or argv[0] != "-ipcfd" or not argv[1].isdigit():
        raise ValueError(f"usage: {sys.argv[0]} -ipcfd <fd> (started by bitcoin-supervisor); "
                         f"got {argv!r}")
    return int(argv[1])


def start_failure_code(exc: BaseException) -> int:
    """The exit code for a role whose ``start`` raised ``exc``.

    EXIT_CONFIG for settings that can never work (ValueError: a bad option; a
    SupervisorError: e.g. an unusable block file; an OSError whose errno is about the
    configured path or address); EXIT_TEMPFAIL for everything else, which a later
    attempt may survive.
    """
    if isinstance(exc, OSError):
        return EXIT_CONFIG if exc.errno in _CONFIG_ERRNOS else EXIT_TEMPFAIL
    if isinstance(exc, (ValueError, SupervisorError)):
        return EXIT_CONFIG
    return EXIT_TEMPFAIL


async def _settled(future: asyncio.Future[int]) -> None:
    await asyncio.shield(future)


def run_role(factory: Callable[[], RoleProcess]) -> None:
    """Run a role process to completion and exit with a reserved exit code. Never returns."""
    try:
        fd = parse_ipcfd(sys.argv[1:])
        settings = ComponentSettings.from_env()
        sock = socket.socket(fileno=fd)
        inbox = IntroInbox.from_env()
    except (ValueError, OSError) as exc:
        print(f"{sys.argv[0]}: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    log.configure(json=True)
    log.bind(component=settings.name)
    # Confinement is the launcher's job: this process was confined by the supervisor's
    # sandbox trampoline before its first instruction.
    protocol = make_protocol()
    code = protocol.run(lambda: _serve(factory(), settings, sock, protocol, inbox))
    sys.exit(code)


async def _serve(proc: RoleProcess, settings: ComponentSettings, sock: socket.socket,
                 protocol: Protocol, inbox: IntroInbox | None) -> int:
    lg = log.get_logger()
    loop = asyncio.get_running_loop()
    # A standby opens nothing until the supervisor activates it (roles/_standby.py).
    start_failure: asyncio.Future[int] = loop.create_future()
    init: Init
    if settings.standby:
        init = StandbyInit(proc, settings, start_failure, start_failure_code)
    else:
        try:
            init = await proc.start(settings)
        except Exception as exc:  # noqa: BLE001 - the start boundary: every failure is an exit code
            code = start_failure_code(exc)
            lg.error("component.start_failed", error=str(exc),
                     error_type=type(exc).__name__, exit_code=code, retry=code != EXIT_CONFIG)
            return code
    terminate = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, terminate.set)
    debug = "ipc" in settings.debug
    # node.sock clients (ipcbind) get the role's own Init, never the introduction methods:
    # the channels in the inbox are the supervisor's to hand out.
    listener_init = init
    if inbox is not None:
        # Started with an introduction channel: the supervisor may connect this role
        # directly to its provider or consumers (roles/_intro.py).
        inbox.start()
        init = IntroducingInit(init, inbox, protocol, name=settings.name, debug=debug)
    waits = {
        asyncio.create_task(protocol.serve(sock, init, name=settings.name, debug=debug),
                            name="link"),
        asyncio.create_task(terminate.wait(), name="signal"),
        asyncio.create_task(proc.stop_requested.wait(), name="stop-rpc"),
        asyncio.create_task(_settled(start_failure), name="start-failed"),
    }
    extra = [asyncio.create_task(serve_listener(protocol, listener, listener_init,
                                                name=settings.name, debug=debug))
             for listener in proc.listeners]
    lg.info("component.serving", role=settings.role, listeners=len(extra),
            standby=settings.standby)
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    why = sorted(t.get_name() for t in done)
    for task in (*pending, *extra):
        task.cancel()
    await asyncio.gather(*pending, *extra, return_exceptions=True)
    lg.info("component.stopping", why=why)
    await proc.stop()
    if start_failure.done():
        return start_failure.result()
    return EXIT_LINK_LOST if why == ["link"] else EXIT_OK
