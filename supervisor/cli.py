"""The ``bitcoin-supervisor`` command line: the daemon itself and verbs that talk to it.

The client verbs (``status``, ``start NAME``, ``stop``, ``restart``, ``shutdown``, ``rpc``)
load only the control protocol and its socket client: the daemon, asyncio, capnp, the
sandbox and structlog are imported by the verbs that run them (``start`` without a name,
``sandbox``, ``policy``), so a ``status`` costs little more than the interpreter's start.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

from bitcoin_supervisor.interfaces import ConfigError, SupervisorError

from ._client import DaemonNotRunning, request_sync
from ._locate import CONFIG_ENV, RUNTIME_ENV, find_config, locate_daemon
from ._policyargs import add_verbs as add_policy_verbs
from .control_protocol import (
    Accepted,
    ComponentReply,
    ComponentRequest,
    ComponentStatus,
    Confinement,
    DiskStatus,
    ErrorCode,
    ErrorReply,
    HealthSummary,
    LastExit,
    ProtocolError,
    ReloadReply,
    ReloadRequest,
    Reply,
    RestartRequest,
    SandboxSummary,
    ShutdownRequest,
    StandbyStatus,
    StartRequest,
    StatusReply,
    StatusRequest,
    StopRequest,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # bad config, bad arguments, unknown component
EXIT_NO_DAEMON = 3
_EPILOG = f"""\
Client verbs find the daemon through the first of:
  --datadir DIR; --config FILE; ${CONFIG_ENV}; ./multiprocess.toml;
  the daemon recorded in /run/bitcoin-supervisor/ (root) or
  $XDG_RUNTIME_DIR/bitcoin-supervisor/ (a user; ${RUNTIME_ENV} overrides both);
  $XDG_CONFIG_HOME/bitcoin-supervisor/multiprocess.toml (default ~/.config);
  /etc/bitcoin-supervisor/multiprocess.toml.
`start` without NAME (the daemon) reads the first config file of that list."""
_COMPONENT_VERBS: dict[str, type[ComponentRequest]] = {
    "start": StartRequest, "stop": StopRequest, "restart": RestartRequest}


class _VersionAction(argparse.Action):
    """``--version``; reads the installed metadata only when asked (it costs an import)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("bitcoin-supervisor")
        except PackageNotFoundError:
            number = "unknown (not installed)"
        print(f"bitcoin-supervisor {number}")
        parser.exit()


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help=f"config file (default: ${CONFIG_ENV}, else the search order "
                        "in `bitcoin-supervisor --help`)")
    parser.add_argument("--datadir", metavar="DIR",
                        help="data directory of the daemon (overrides the config's)")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every verb."""
    parser = argparse.ArgumentParser(
        prog="bitcoin-supervisor",
        description="Sandboxed process supervisor for multiprocess Bitcoin.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction,
                        help="show the version and exit")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    start = verbs.add_parser("start", help="run the daemon (foreground), or start NAME in a "
                             "running daemon")
    start.add_argument("name", nargs="?", help="component to start in the running daemon")
    start.add_argument("--debug", action="append", default=[], metavar="CATEGORY",
                       choices=["ipc"], help="extra logging, e.g. --debug ipc")
    start.add_argument("--log-format", choices=["auto", "json", "console"], default="auto",
                       help="log format (default: JSON unless stderr is a terminal)")
    _common(start)

    status = verbs.add_parser("status", help="show the daemon's components")
    status.add_argument("name", nargs="?", help="only this component")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    _common(status)

    for verb, text in (("stop", "stop a component"), ("restart", "restart a component alone")):
        sub = verbs.add_parser(verb, help=text)
        sub.add_argument("name", help="component name (see status)")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        _common(sub)

    shutdown = verbs.add_parser("shutdown", help="stop every component and the daemon")
    _common(shutdown)

    reload = verbs.add_parser(
        "reload", help="re-read the daemon's config file: start added components, stop "
        "removed ones, restart changed ones (exit 2 and nothing changed on a bad config)")
    reload.add_argument("--json", action="store_true", help="machine-readable output")
    _common(reload)

    export = verbs.add_parser(
        "export", help="write systemd units that enforce each component's policy")
    export.add_argument("format", choices=["systemd"], help="what to write")
    export.add_argument("--dir", default=".", metavar="DIR",
                        help="where to write the units (default: the current directory)")
    _common(export)

    rpc = verbs.add_parser("rpc", help="call the node's JSON-RPC, like bitcoin-cli")
    rpc.add_argument("--wallet", metavar="NAME", help="route to /wallet/NAME")
    rpc.add_argument("method")
    rpc.add_argument("params", nargs="*", help="parameters; JSON values or plain strings")
    _common(rpc)
    add_policy_verbs(verbs)
    return parser


def _socket_path(args: argparse.Namespace) -> Path:
    return locate_daemon(args.config, args.datadir).socket


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``bitcoin-supervisor`` console script; exits with a status."""
    args = build_parser().parse_args(argv)
    try:
        code = _dispatch(args)
    except ConfigError as exc:
        print(f"bitcoin-supervisor: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except DaemonNotRunning as exc:
        print(f"bitcoin-supervisor: {exc}", file=sys.stderr)
        code = EXIT_NO_DAEMON
    except SupervisorError as exc:
        print(f"bitcoin-supervisor: {exc}", file=sys.stderr)
        code = EXIT_FAILED
    sys.exit(code)


def _dispatch(args: argparse.Namespace) -> int:
    match args.verb:
        case "start" if args.name is None:
            return _run_daemon(args)
        case "rpc":
            return _rpc(args)
        case "status":
            return _status(args)
        case "sandbox" | "policy":
            return _policy(args)
        case "reload":
            return _reload(args)
        case "export":
            return _export(args)
        case "shutdown":
            reply = request_sync(_socket_path(args), ShutdownRequest())
            if isinstance(reply, ErrorReply):
                return _refused(reply)
            print("shutdown requested")
            return EXIT_OK
        case _:
            request = _COMPONENT_VERBS[args.verb](name=args.name)
            return _print_component_reply(args, request_sync(_socket_path(args), request,
                                                             timeout=300.0))


# Optional imports the daemon never uses but would otherwise carry for its whole life
# (issue 9: RSS goal 30 MiB): structlog imports rich (and with it pygments) whenever it is
# installed — import-linter brings it into the dev venv — for tracebacks the daemon
# renders as JSON or plain lines (~5 MiB); asyncio imports ssl for TLS transports the
# daemon never opens (~1.4 MiB). Both libraries treat these imports as optional; a None
# entry in sys.modules makes them fail at once, as if not installed.
_DAEMON_SKIPS = ("rich", "better_exceptions", "ssl")


def _run_daemon(args: argparse.Namespace) -> int:
    for name in _DAEMON_SKIPS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    import dataclasses

    from bitcoin_supervisor import log
    from bitcoin_supervisor.ipc import make_protocol, resolve_executable

    from ._config import Config, load_config
    from ._daemon import Daemon

    path = find_config(args.config)

    def load() -> Config:  # at start and at each reload: the same file and overrides
        # Every program is looked up before anything starts: a typo in argv is exit 2 with
        # its file:line, not a component failing after the others came up.
        config = load_config(path, datadir_override=args.datadir,
                             resolve_program=resolve_executable)
        if args.debug:
            debug = tuple(sorted(set(config.debug) | set(args.debug)))
            config = dataclasses.replace(config, debug=debug)
        return config

    config = load()
    fmt = args.log_format
    # Under systemd the events go to the journal with their fields (COMPONENT=, EVENT=).
    log.configure(json=None if fmt == "auto" else fmt == "json", journal=True)
    log.get_logger().info("config.loaded", path=str(config.path),
                          components=[c.name for c in config.components])
    protocol = make_protocol()
    daemon: list[Daemon] = []

    def run() -> Awaitable[int]:
        daemon.append(Daemon(config, protocol, reload_config=load))
        return daemon[0].run()

    code = protocol.run(run)
    if daemon and daemon[0].refused is not None:
        print(f"bitcoin-supervisor: cannot start, every component was refused: "
              f"{daemon[0].refused}", file=sys.stderr)
    return code


def _policy(args: argparse.Namespace) -> int:
    import logging

    from bitcoin_supervisor import log

    from . import _policycli

    # Library events go to stderr, warnings only: stdout carries the verb's results.
    log.configure(level=logging.WARNING)
    return _policycli.dispatch(args)


def _rpc(args: argparse.Namespace) -> int:
    from bitcoin_supervisor import jsonfmt

    from ._config import load_config
    from ._rpcclient import RpcCallError, RpcEndpoint, call, cookie_owner, parse_cli_params

    target = locate_daemon(args.config, args.datadir)
    config = load_config(target.config or find_config(args.config),
                         datadir_override=target.datadir)
    # Exit 3 like every verb when no daemon runs (not "cannot read the cookie"); the
    # status also says which uid the node runs as, the only one its cookie may belong to.
    control = target.socket
    status = request_sync(control, StatusRequest())
    endpoint = RpcEndpoint.from_config(config)
    try:
        result = call(endpoint, args.method, parse_cli_params(args.params),
                      cookie_owner=cookie_owner(status, endpoint.name, control),
                      wallet=args.wallet)
    except RpcCallError as exc:
        print(str(exc), file=sys.stderr)
        return abs(exc.code)  # bitcoin-cli's convention
    # bitcoin-cli prints strings bare, null as nothing, everything else as JSON.
    if isinstance(result, str):
        print(result)
    elif result is not None:
        print(jsonfmt.dumps(result, indent=2))
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from ._config import load_config
    from ._export import export_units

    config = load_config(find_config(args.config), datadir_override=args.datadir)
    for path in export_units(config, Path(args.dir)):
        print(path)
    return EXIT_OK


def _reload(args: argparse.Namespace) -> int:
    reply = request_sync(_socket_path(args), ReloadRequest(), timeout=300.0)
    match reply:
        case ErrorReply():
            return _refused(reply)
        case ReloadReply():
            pass
        case _:
            raise _unexpected(reply)
    if args.json:
        _print_json(reply)
    else:
        for what in ("added", "removed", "changed", "unchanged"):
            names = getattr(reply, what)
            print(f"{what}: {', '.join(names) if names else '-'}")
    return EXIT_OK


def _refused(reply: ErrorReply) -> int:
    print(f"bitcoin-supervisor: {reply.error}", file=sys.stderr)
    usage = reply.code in (ErrorCode.UNKNOWN_COMPONENT, ErrorCode.BAD_REQUEST,
                           ErrorCode.BAD_CONFIG)
    return EXIT_USAGE if usage else EXIT_FAILED


def _print_json(reply: Reply) -> None:
    """A reply for scripts: its record without the envelope's ``ok``."""
    shown = reply.to_json()
    del shown["ok"]
    print(json.dumps(shown, indent=2))


def _unexpected(reply: Reply) -> ProtocolError:
    return ProtocolError(f"the daemon sent an unexpected {type(reply).__name__}")


def _print_component_reply(args: argparse.Namespace, reply: Reply) -> int:
    match reply:
        case ErrorReply(component=None):
            return _refused(reply)
        case ErrorReply(component=ComponentStatus() as comp) | ComponentReply(component=comp):
            pass
        case _:
            raise _unexpected(reply)
    if getattr(args, "json", False):  # `start NAME` has no --json
        print(json.dumps(reply.to_json(), indent=2))
    else:
        pid = f", pid {comp.pid}" if comp.pid is not None else ""
        print(f"{comp.name}: {_active(comp)}{pid}")
    if isinstance(reply, ErrorReply):
        print(f"bitcoin-supervisor: {reply.error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    reply = request_sync(_socket_path(args), StatusRequest(args.name))
    match reply:
        case ErrorReply():
            return _refused(reply)
        case StatusReply():
            pass
        case ComponentReply() | Accepted() | ReloadReply():
            raise _unexpected(reply)
    if args.json:
        _print_json(reply)
    else:
        sys.stdout.write(format_status(reply, color=sys.stdout.isatty()))
    return EXIT_OK


# -- human-readable status -----------------------------------------------------------------

_DOT_COLOR = {"active": "\033[32m", "failed": "\033[31m", "activating": "\033[33m",
              "deactivating": "\033[33m", "inactive": ""}
_CONFINEMENT = {Confinement.NONE: "none (runs unconfined)",
                Confinement.CONFIGURED: "configured (not verified from /proc)",
                Confinement.ENFORCED: "enforced (verified)",
                Confinement.VIOLATED: "VIOLATED (killed)"}


def _ago(seconds: float) -> str:
    seconds = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    parts.append(f"{seconds}s")
    return " ".join(parts[:2])


def _active(comp: ComponentStatus) -> str:
    """``active (running)``, ``failed (boot-refused)``, ``inactive (stopped,
    stopped-by-user)``: each word once, "none" never."""
    details = dict.fromkeys(d for d in (comp.substate, comp.reason, comp.degraded)
                            if d is not None and d not in ("none", comp.state))
    sync = comp.sync
    if sync is not None and not sync.synced:
        details[f"catching up {sync.height}/{sync.tip}"] = None
    disk = comp.disk
    if comp.disk_full and disk is not None:
        details[f"disk full: {_size(disk.used_bytes)} of {_size(disk.size_bytes)}"] = None
    return comp.state + (f" ({', '.join(details)})" if details else "")


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} B"


def _disk_line(disk: DiskStatus | None) -> str:
    if disk is None:
        return "unknown"
    if not disk.enforced:
        budget = f"{_size(disk.budget_bytes)} configured, " if disk.budget_bytes else ""
        return f"no budget ({budget}{disk.note})"
    return (f"{_size(disk.used_bytes)} of {_size(disk.size_bytes)} used, "
            f"{disk.used_inodes} of {disk.budget_inodes} inodes"
            + (" — FULL" if disk.full else ""))


def _last_exit(last: LastExit) -> str:
    how = (f"signal {last.signal} " if last.signal
           else f"code {last.exit_code} " if last.exit_code is not None else "")
    detail = f" {last.detail}" if last.detail else ""
    return f"{how}({last.reason}){detail}"


def _health_line(health: HealthSummary) -> str:
    if health.last_ok_age_s is None:
        return f"{health.check}: no check answered yet"
    return (f"{health.check} ok ({health.passed} passed, last "
            f"{health.last_ok_age_s:.1f} s ago)")


def _standby_line(standby: StandbyStatus) -> str:
    if standby.pid is None:
        return "none yet (starting or being replaced)"
    memory = f", {_size(standby.memory_bytes)}" if standby.memory_bytes is not None else ""
    return (f"pid {standby.pid}, "
            + ("ready" if standby.ready else "starting (not ready yet)") + memory)


def _sandbox_line(summary: SandboxSummary | None) -> str:
    if summary is None:
        return "none (runs unsandboxed)"
    if not summary.landlock:
        landlock = "landlock off"
    elif summary.landlock_abi is None:
        landlock = "landlock (not supported by this kernel)"
    else:
        landlock = f"landlock ABI {summary.landlock_abi}"
    return (f"ns {','.join(summary.namespaces)}; network {summary.network}; "
            f"seccomp {summary.seccomp_default} ({summary.seccomp_allowed} syscalls "
            f"allowed); {landlock}; caps {','.join(summary.capabilities) or 'none'}; "
            f"uid {summary.uid if summary.uid is not None else 'mapped'}; "
            f"{_cgroup_text(summary)}")


def _cgroup_text(summary: SandboxSummary) -> str:
    cgroup = summary.cgroup
    if cgroup.unavailable:
        return f"cgroup limits off ({cgroup.unavailable})"

    def size(value: int | None) -> str:
        return "max" if value is None else f"{value // (1 << 20)}M"

    memory = cgroup.usage.memory_bytes if cgroup.usage else None
    used = f", using {size(memory)}" if memory is not None else ""
    pids = cgroup.pids_max if cgroup.pids_max is not None else "max"
    version = f"cgroup {cgroup.version}" if cgroup.version else "cgroup"
    return f"{version} memory {size(cgroup.memory_max)} pids {pids}{used}"


def format_status(reply: StatusReply, *, color: bool = False) -> str:
    """Render ``status`` like ``systemctl status``: one block per component."""
    sup = reply.supervisor
    lines = [f"bitcoin-supervisor  pid {sup.pid}, up {_ago(sup.uptime_s)}",
             f"     Config: {sup.config}", f"    Datadir: {sup.datadir}", ""]
    for comp in reply.components:
        dot = "●"
        if color:
            dot = f"{_DOT_COLOR.get(comp.state, '')}●\033[0m"
        since = ""
        if comp.since:
            since = (f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(comp.since))}"
                     f"; {_ago(time.time() - comp.since)} ago")
        lines.append(f"{dot} {comp.name} — " + (f"role {comp.role}" if comp.role
                                                 else "no role (a foreign program)"))
        lines.append(f"     Active: {_active(comp)}{since}")
        if comp.pid is not None:
            lines.append(f"   Main PID: {comp.pid}")
        lines.append(f"   Restarts: {comp.restarts}")
        for link in comp.links:
            lagging = ", LAGGING" if link.lagging else ""
            lines.append(f"       Uses: {link.capability} from {link.provider} "
                         f"({link.path}{lagging})")
        if comp.last_exit:
            lines.append(f"  Last exit: {_last_exit(comp.last_exit)}")
        confined = _CONFINEMENT[comp.confinement]
        if comp.confinement_detail:
            confined += f": {comp.confinement_detail}"
        lines.append(f"   Confined: {confined}")
        if comp.health is not None:
            lines.append(f"     Health: {_health_line(comp.health)}")
        if comp.standby is not None:
            lines.append(f"    Standby: {_standby_line(comp.standby)}")
        # The configured policy, labelled as such: what is in force is the line above.
        lines.append(f"     Policy: {_sandbox_line(comp.sandbox)}")
        lines.append(f"    Datadir: {comp.datadir}")
        lines.append(f"       Disk: {_disk_line(comp.disk)}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
