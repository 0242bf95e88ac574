"""The ``sandbox run`` and ``policy show|check|test`` verbs: sandbox policies from the
command line, without a running daemon."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import textwrap
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import PolicyError, SandboxError, SupervisorError
from bitcoin_supervisor.sandbox import (
    EXIT_NOT_FOUND,
    EXIT_SANDBOX_FAILED,
    POLICY_DIR,
    Policy,
    ProbeResult,
    build_filter,
    load_policy,
    make_plan,
    resolve_command,
    run_probe_matrix,
    run_sandboxed,
    unnamed_reason,
)

from ._capabilities import default_providers
from ._policyargs import POLICIES, ROLES, add_verbs

__all__ = ["add_verbs", "dispatch"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_INFINITY = (1 << 64) - 1
def dispatch(args: argparse.Namespace) -> int:
    """Run the parsed ``sandbox``/``policy`` verb; returns the process exit status.
    Blocks (``sandbox run`` and ``policy test`` run processes). Raises SupervisorError
    (ConfigError/PolicyError for bad input) for ``cli.main`` to report."""
    if args.verb == "sandbox":
        return _sandbox_run(args)
    match args.policy_verb:
        case "show":
            return _show(args)
        case "check":
            return _check(args.file)
        case _:
            return _test(args)


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise PolicyError(f"bad {what} {item!r}", hint=f"write {what} as KEY=VALUE")
        out[key] = value
    return out


def _datadirs(args: argparse.Namespace) -> dict[str, Path]:
    out = {}
    for role, path in _pairs(args.datadir_of, "--datadir-of").items():
        if role not in ROLES:
            raise PolicyError(f"unknown role {role!r} in --datadir-of",
                              hint="roles: " + ", ".join(ROLES))
        out[role] = Path(path).absolute()
    return out


def _options(args: argparse.Namespace) -> dict[str, object]:
    return {k: int(v) if v.isdigit() else v
            for k, v in _pairs(args.option, "--option").items()}


# ---- sandbox run --------------------------------------------------------------------

def _sandbox_run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("bitcoin-supervisor: sandbox run: no command given (… -- CMD [ARGS...])",
              file=sys.stderr)
        return EXIT_USAGE
    log.configure(level=logging.INFO if args.verbose else logging.WARNING)
    datadirs = _datadirs(args)
    options = _options(args)
    with _datadir(args.datadir, args.role) as datadir:
        datadirs[args.role] = datadir
        policy = load_policy(args.role, datadirs=datadirs, options=options,
                             providers=default_providers(args.role))
        executable = resolve_command(command[0], policy, os.environ.get("PATH", os.defpath))
        if executable is None and "/" in command[0] and os.access(command[0], os.X_OK):
            # A path the operator named: the plan binds it (and its interpreter) read-only.
            executable = Path(os.path.abspath(command[0]))
        if executable is None:
            print(f"bitcoin-supervisor: {command[0]}: not found in role {args.role}'s view "
                  "(its PATH entries outside the view are skipped)", file=sys.stderr)
            return EXIT_NOT_FOUND
        try:
            plan = make_plan(policy, name=args.role, executable=executable, cwd=datadir)
        except SandboxError as exc:
            print(f"bitcoin-supervisor: sandbox run: {exc}", file=sys.stderr)
            return EXIT_SANDBOX_FAILED
        outcome = run_sandboxed(plan, command, keep_fds=tuple(args.keep_fd))
    if outcome.signal == signal.SIGSYS:
        culprit = (f": syscall {outcome.syscall}" if outcome.syscall
                   else f" (syscall unknown: {unnamed_reason()})")
        print(f"bitcoin-supervisor: {command[0]}: killed by sandbox (SIGSYS){culprit}",
              file=sys.stderr)
    elif outcome.signal is not None and outcome.signal != signal.SIGINT:
        print(f"bitcoin-supervisor: {command[0]}: killed by signal "
              f"{signal.Signals(outcome.signal).name}", file=sys.stderr)
    return outcome.status


@contextmanager
def _datadir(given: str | None, role: str) -> Iterator[Path]:
    """The role's datadir: the given one (created if missing) or a temporary one that
    is removed afterwards."""
    if given is not None:
        path = Path(given).absolute()
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix=f"sandbox-run-{role}-"))
    print(f"bitcoin-supervisor: no --datadir: using temporary datadir {path} "
          "(removed afterwards)", file=sys.stderr)
    try:
        yield path
    finally:
        try:
            shutil.rmtree(path)
        except OSError as exc:
            print(f"bitcoin-supervisor: could not remove {path}: {exc}", file=sys.stderr)


# ---- policy show --------------------------------------------------------------------

def _show(args: argparse.Namespace) -> int:
    datadirs = {r: Path(f"/<datadir:{r}>") for r in (*ROLES, args.role)}
    datadirs.update(_datadirs(args))
    if args.datadir:
        datadirs[args.role] = Path(args.datadir).absolute()
    policy = load_policy(args.role, datadirs=datadirs, options=_options(args),
                         providers=default_providers(args.role))
    data = describe(policy)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        sys.stdout.write(_render(data))
    return EXIT_OK


def _path(path: Path) -> str:
    text = str(path)
    return text[1:] if text.startswith("/<datadir:") else text


def _limit(value: int) -> int | str:
    return "infinity" if value == _INFINITY else value


def describe(policy: Policy) -> dict[str, Any]:
    """The effective policy as plain JSON-able data: every allowed syscall (sorted, with
    the count), resolved paths, namespaces, network, Landlock, rlimits, uid. Pure."""
    view, sec = policy.filesystem, policy.seccomp
    return {
        "role": policy.role,
        "source": str(policy.source),
        "uid": policy.uid,
        "gid": policy.gid,
        "namespaces": sorted(policy.namespaces),
        "hostname": policy.hostname,
        "network": policy.network,
        "filesystem": {
            "read_only": [_path(p) for p in view.read_only],
            "read_write": [_path(p) for p in view.read_write],
            "tmpfs": [_path(p) for p in view.tmpfs],
            "devices": [_path(p) for p in view.devices],
            "proc": view.proc,
            "optional": sorted(_path(p) for p in view.optional),
        },
        "landlock": {"enabled": policy.landlock.enabled,
                     "tcp_bind": list(policy.landlock.tcp_bind),
                     "tcp_connect": list(policy.landlock.tcp_connect),
                     "scope": sorted(policy.landlock.scope)},
        "rlimits": {name: [_limit(soft), _limit(hard)]
                    for name, (soft, hard) in sorted(policy.rlimits.items())},
        "capabilities": list(policy.capabilities),
        "keep_fds": list(policy.keep_fds),
        "mdwe": policy.mdwe,
        "seccomp": {
            "default_action": sec.default_action,
            "groups": list(sec.groups),
            "allowed_count": len(sec.allow),
            "allowed": sorted(sec.allow),
            "errno": {name: _errno_name(code) for name, code in sorted(sec.errno.items())},
            "rules": [{"syscall": r.syscall, "action": r.action,
                       "args": [{"arg": a.index, "mask": hex(a.mask), "value": hex(a.value)}
                                for a in r.args]} for r in sec.rules],
        },
    }


def _errno_name(code: int) -> str:
    return errno.errorcode.get(code, str(code))


def _render(data: dict[str, Any]) -> str:
    fs, ll, sec = data["filesystem"], data["landlock"], data["seccomp"]
    lines = [f"role {data['role']}  (policy {data['source']})",
             f"  uid/gid       {data['uid']}/{data['gid']} (outer ids when run as root)",
             f"  namespaces    {' '.join(data['namespaces'])}; hostname {data['hostname']}",
             f"  network       {data['network']}"]
    for key, label in (("read_only", "read-only"), ("read_write", "read-write"),
                       ("tmpfs", "tmpfs"), ("devices", "devices")):
        entries = fs[key] or ["-"]
        for i, entry in enumerate(entries):
            optional = " (optional)" if entry in fs["optional"] else ""
            lines.append(f"  {label if i == 0 else '':<13} {entry}{optional}")
    lines += [f"  proc          {'mounted' if fs['proc'] else 'none'}",
              f"  landlock      {'on' if ll['enabled'] else 'off'}; tcp bind "
              f"{_ports(ll['tcp_bind'])}; tcp connect {_ports(ll['tcp_connect'])}; "
              f"scope {', '.join(ll['scope']) or 'none'}",
              "  rlimits       " + " ".join(
                  f"{k}={v[0] if v[0] == v[1] else f'{v[0]}/{v[1]}'}"
                  for k, v in data["rlimits"].items()),
              f"  capabilities  {', '.join(data['capabilities']) or 'none'}",
              f"  hardening     no_new_privs{', mdwe' if data['mdwe'] else ''}; fds kept "
              f"{', '.join(map(str, data['keep_fds']))}",
              f"  seccomp       default {sec['default_action']}; groups "
              f"{' '.join(sec['groups']) or 'none'}",
              f"  allowed ({sec['allowed_count']}):"]
    lines += textwrap.wrap(" ".join(sec["allowed"]), width=88, initial_indent="    ",
                           subsequent_indent="    ")
    lines += [f"  errno         {name} -> {code}" for name, code in sec["errno"].items()]
    for rule in sec["rules"]:
        cond = " and ".join(f"arg{a['arg']} & {a['mask']} == {a['value']}"
                            for a in rule["args"])
        lines.append(f"  rule          {rule['syscall']}: {rule['action']} if {cond}")
    return "\n".join(lines) + "\n"


def _ports(ports: list[int]) -> str:
    return ", ".join(map(str, ports)) or "none"


# ---- policy check -------------------------------------------------------------------

def _check(file: Path) -> int:
    try:
        _check_file(file)
    except PolicyError as exc:
        print(re.sub(r"\s*\n\s*", " ", str(exc)), file=sys.stderr)
        return EXIT_USAGE
    print("ok")
    return EXIT_OK


def _check_file(file: Path) -> None:
    """Load ``file`` as the loader would (a role policy, or a syscalls.toml checked
    against the shipped roles) and build its seccomp filters; raises PolicyError
    located in ``file`` (or in the syscalls.toml next to it)."""
    source = file.absolute()
    if not source.is_file():
        raise PolicyError("no such file", path=str(file))
    groups = source.parent / "syscalls.toml"
    with tempfile.TemporaryDirectory(prefix="policy-check-") as tmp:
        stage = Path(tmp)
        links: dict[Path, Path] = {}
        if source.name == "syscalls.toml":
            roles = [(r, POLICY_DIR / f"{r}.toml") for r in POLICIES]
            links[stage / "syscalls.toml"] = source
        else:
            roles = [(_role_of(source), source)]
            links[stage / "syscalls.toml"] = groups if groups.is_file() else (
                POLICY_DIR / "syscalls.toml")
        for role, path in roles:
            links[stage / f"{role}.toml"] = path
        for link, target in links.items():
            link.symlink_to(target)
        try:
            for role, _ in roles:
                datadirs = {r: Path(f"/<datadir:{r}>") for r in (*ROLES, role)}
                build_filter(load_policy(role, datadirs=datadirs,
                                         policy_dir=stage).seccomp)
        except PolicyError as exc:
            where = links.get(Path(exc.path or ""), Path(exc.path or str(file)))
            shown = file if where == source else where
            raise PolicyError(exc.message, path=str(shown), line=exc.line, col=exc.col,
                              hint=exc.hint) from exc
        except SupervisorError as exc:
            raise PolicyError(str(exc), path=str(file)) from exc


def _role_of(path: Path) -> str:
    """The role a policy file declares (the loader then checks it); its stem otherwise."""
    try:
        role = tomllib.loads(path.read_text(encoding="utf-8")).get("role")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        role = None
    if isinstance(role, str) and re.fullmatch(r"[a-z][a-z0-9_-]*", role):
        return role
    return re.sub(r"[^a-z0-9_-]", "_", path.stem.lower()) or "policy"


# ---- policy test --------------------------------------------------------------------

def _test(args: argparse.Namespace) -> int:
    roles = [args.role] if args.role else list(ROLES)
    start = time.monotonic()
    results = run_probe_matrix(roles, parallel=args.parallel)
    seconds = time.monotonic() - start
    failed = [r for r in results if not r.passed]
    if args.json:
        print(json.dumps({"probes": [_row(r) for r in results], "failed": len(failed),
                          "seconds": round(seconds, 2)}, indent=2))
    else:
        sys.stdout.write(_table(results))
        print(f"{len(results)} probes, {len(failed)} failed, {seconds:.1f} s")
    return EXIT_FAILED if failed else EXIT_OK


def _row(result: ProbeResult) -> dict[str, Any]:
    return {"role": result.role, "probe": result.probe, "what": result.what,
            "expected": result.expected, "observed": result.observed,
            "result": "PASS" if result.passed else "FAIL",
            "seconds": round(result.seconds, 3), "detail": result.detail}


def _table(results: list[ProbeResult]) -> str:
    header = ("ROLE", "PROBE", "EXPECTED", "OBSERVED", "RESULT")
    rows = [(r.role, r.probe, r.expected, r.observed, "PASS" if r.passed else "FAIL")
            for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    for r in results:
        if not r.passed and r.detail:
            lines.append(f"FAIL {r.role}/{r.probe}: {r.detail}")
    return "\n".join(lines) + "\n"
