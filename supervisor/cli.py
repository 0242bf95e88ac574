"""The ``bitcoin-supervisor`` command line: the daemon itself and verbs that talk to it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bitcoin_supervisor import jsonfmt, log
from bitcoin_supervisor.interfaces import ConfigError, SupervisorError

from . import _policycli
from ._config import Config, load_config
from ._control import DaemonNotRunning, request_sync
from ._daemon import CONTROL_SOCKET, ERR_UNKNOWN_COMPONENT
from ._rpcclient import RpcCallError, RpcEndpoint, call, parse_cli_params

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # bad config, bad arguments, unknown component
EXIT_NO_DAEMON = 3
DEFAULT_CONFIG = "multiprocess.toml"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help=f"config file (default: ./{DEFAULT_CONFIG})")
    parser.add_argument("--datadir", metavar="DIR",
                        help="data directory of the daemon (overrides the config's)")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every verb."""
    parser = argparse.ArgumentParser(
        prog="bitcoin-supervisor",
        description="Sandboxed process supervisor for multiprocess Bitcoin.")
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

    rpc = verbs.add_parser("rpc", help="call the node's JSON-RPC, like bitcoin-cli")
    rpc.add_argument("--wallet", metavar="NAME", help="route to /wallet/NAME")
    rpc.add_argument("method")
    rpc.add_argument("params", nargs="*", help="parameters; JSON values or plain strings")
    _common(rpc)
    _policycli.add_verbs(verbs)
    return parser


def _load(args: argparse.Namespace, *, required: bool) -> Config | None:
    path = Path(args.config or DEFAULT_CONFIG)
    if args.config is None and not path.exists() and not required:
        return None
    return load_config(path, datadir_override=args.datadir)


def _socket_path(args: argparse.Namespace) -> Path:
    config = _load(args, required=args.datadir is None)
    if config is not None:
        return config.datadir / CONTROL_SOCKET
    return Path(args.datadir) / CONTROL_SOCKET


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``bitcoin-supervisor`` console script; exits with a status."""
    args = build_parser().parse_args(argv)
    # Client verbs print results on stdout; library events go to stderr, warnings only.
    log.configure(level=logging.WARNING)
    try:
        code = _dispatch(args)
    except ConfigError as exc:
        print(f"bitcoin-supervisor: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except DaemonNotRunning as exc:
        print(f"bitcoin-supervisor: {exc}", file=sys.stderr)
        code = EXIT_NO_DAEMON
    except RpcCallError as exc:
        print(str(exc), file=sys.stderr)
        code = abs(exc.code)  # bitcoin-cli's convention
    except SupervisorError as exc:
        print(f"bitcoin-supervisor: {exc}", file=sys.stderr)
        code = EXIT_FAILED
    sys.exit(code)


def _dispatch(args: argparse.Namespace) -> int:
    match args.verb:
        case "start" if args.name is None:
            return _run_daemon(args)
        case "rpc":
            config = _load(args, required=True)
            assert config is not None
            # Exit 3 like every verb when no daemon runs (not "cannot read the cookie").
            request_sync(config.datadir / CONTROL_SOCKET, {"verb": "status", "name": None})
            result = call(RpcEndpoint.from_config(config), args.method,
                          parse_cli_params(args.params), wallet=args.wallet)
            _print_rpc_result(result)
            return EXIT_OK
        case "status":
            return _status(args)
        case "sandbox" | "policy":
            return _policycli.dispatch(args)
        case "shutdown":
            request_sync(_socket_path(args), {"verb": "shutdown"})
            print("shutdown requested")
            return EXIT_OK
        case _:
            reply = request_sync(_socket_path(args), {"verb": args.verb, "name": args.name},
                                 timeout=300.0)
            return _print_component_reply(args, reply)


def _run_daemon(args: argparse.Namespace) -> int:
    config = _load(args, required=True)
    assert config is not None
    if args.debug:
        debug = tuple(sorted(set(config.debug) | set(args.debug)))
        config = dataclasses.replace(config, debug=debug)
    fmt = args.log_format
    log.configure(json=None if fmt == "auto" else fmt == "json")
    log.get_logger().info("config.loaded", path=str(config.path),
                          components=[c.name for c in config.components])
    from bitcoin_supervisor.ipc import make_protocol

    from ._daemon import Daemon

    protocol = make_protocol()
    return protocol.run(lambda: Daemon(config, protocol).run())


def _print_rpc_result(result: Any) -> None:
    # bitcoin-cli prints strings bare, null as nothing, everything else as JSON.
    if isinstance(result, str):
        print(result)
    elif result is not None:
        print(jsonfmt.dumps(result, indent=2))


def _print_component_reply(args: argparse.Namespace, reply: dict[str, Any]) -> int:
    if not reply.get("ok") and "component" not in reply:
        print(f"bitcoin-supervisor: {reply.get('error')}", file=sys.stderr)
        return EXIT_USAGE if reply.get("code") == ERR_UNKNOWN_COMPONENT else EXIT_FAILED
    if getattr(args, "json", False):
        print(json.dumps(reply, indent=2))
    else:
        comp = reply["component"]
        print(f"{comp['name']}: {comp['state']} ({comp['substate']}), pid {comp['pid']}")
    if not reply.get("ok"):
        print(f"bitcoin-supervisor: {reply.get('error')}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    reply = request_sync(_socket_path(args), {"verb": "status", "name": args.name})
    if not reply.get("ok"):
        print(f"bitcoin-supervisor: {reply.get('error')}", file=sys.stderr)
        return EXIT_USAGE if reply.get("code") == ERR_UNKNOWN_COMPONENT else EXIT_FAILED
    reply.pop("ok", None)
    if args.json:
        print(json.dumps(reply, indent=2))
    else:
        sys.stdout.write(format_status(reply, color=sys.stdout.isatty()))
    return EXIT_OK


_DOT_COLOR = {"active": "\033[32m", "failed": "\033[31m", "activating": "\033[33m",
              "deactivating": "\033[33m", "inactive": ""}


def _ago(seconds: float) -> str:
    seconds = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    parts.append(f"{seconds}s")
    return " ".join(parts[:2])


def _sandbox_line(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return "none (runs unsandboxed)"
    landlock = (f"landlock ABI {summary.get('landlock_abi')}" if summary["landlock"]
                else "landlock off")
    return (f"ns {','.join(summary['namespaces'])}; network {summary['network']}; "
            f"seccomp {summary['seccomp_default']} ({summary['seccomp_allowed']} syscalls "
            f"allowed); {landlock}; caps {','.join(summary['capabilities']) or 'none'}; "
            f"uid {summary['uid'] if summary['uid'] is not None else 'mapped'}; "
            f"{_cgroup_text(summary.get('cgroup'))}")


def _cgroup_text(cgroup: dict[str, Any] | None) -> str:
    if not cgroup or cgroup.get("unavailable"):
        reason = cgroup.get("unavailable") if cgroup else "none"
        return f"cgroup limits off ({reason})"
    def size(value: int | None) -> str:
        return "max" if value is None else f"{value // (1 << 20)}M"
    usage = cgroup.get("usage") or {}
    used = f", using {size(usage['memory_bytes'])}" if "memory_bytes" in usage else ""
    return (f"cgroup {cgroup['version']} memory {size(cgroup['memory_max'])} "
            f"pids {cgroup['pids_max'] if cgroup['pids_max'] is not None else 'max'}{used}")


def format_status(reply: dict[str, Any], *, color: bool = False) -> str:
    """Render ``status`` like ``systemctl status``: one block per component."""
    sup = reply["supervisor"]
    lines = [f"bitcoin-supervisor  pid {sup['pid']}, up {_ago(sup['uptime_s'])}",
             f"     Config: {sup['config']}", f"    Datadir: {sup['datadir']}", ""]
    for comp in reply["components"]:
        dot = "●"
        if color:
            dot = f"{_DOT_COLOR.get(comp['state'], '')}●\033[0m"
        since = ""
        if comp.get("since"):
            since = (f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(comp['since']))}"
                     f"; {_ago(time.time() - comp['since'])} ago")
        reason = f" ({comp['reason']})" if comp["reason"] not in ("none",) else ""
        lines.append(f"{dot} {comp['name']} — role {comp['role']}")
        lines.append(f"     Active: {comp['state']} ({comp['substate']}){reason}{since}")
        if comp["pid"] is not None:
            lines.append(f"   Main PID: {comp['pid']}")
        lines.append(f"   Restarts: {comp['restarts']}")
        last = comp.get("last_exit")
        if last:
            how = (f"signal {last['signal']}" if last["signal"]
                   else f"code {last['exit_code']}")
            detail = f" {last['detail']}" if last.get("detail") else ""
            lines.append(f"  Last exit: {how} ({last['reason']}){detail}")
        lines.append(f"    Sandbox: {_sandbox_line(comp.get('sandbox'))}")
        lines.append(f"    Datadir: {comp['datadir']}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
