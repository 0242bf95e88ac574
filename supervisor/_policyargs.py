"""The command line of the ``sandbox`` and ``policy`` verbs, apart from their code.

Building the CLI's parser must not import the sandbox package: every ``status`` call
builds it. ``_policycli`` runs the verbs and is imported only when one is chosen.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["POLICIES", "ROLES", "add_verbs"]

ROLES = ("node", "wallet", "index")
# The roles plus the shipped policies of foreign programs (policies/bitcoin-node.toml,
# policies/mp-example.toml): what `sandbox run --role` and `policy show` accept.
POLICIES = (*ROLES, "bitcoin-node", "mp-example")
_RUN_HELP = """\
Run CMD under ROLE's sandbox policy, like bubblewrap or nsjail's one-shot mode: to debug
a policy or to confine a foreign binary (e.g. a real bitcoin-node). The policy is applied
in full (namespaces, filesystem view, Landlock, capabilities, rlimits, seccomp) with
exactly one addition: the filter allows the single execve this runner makes (matched by
the filename pointer's address) and Landlock lets it execute CMD and its ELF
interpreter. Later execve calls by CMD are killed; no_new_privs stays set, so even an
exec that slipped through could never gain privilege (setuid bits and file capabilities
are ignored), and the filter, Landlock and namespaces are inherited by it.

A bare CMD is looked up on PATH among the files the role's view shows; a CMD given as a
path is added to the view read-only (with its #! interpreter). It runs as PID 1 of its
own pid namespace with the datadir as its working directory, so it ignores signals it
has no handler for (a second Ctrl-C or SIGTERM kills it). Exit status: CMD's own, or
128+n when signal n killed it ("killed by sandbox (SIGSYS)" when the filter did); 125
when the sandbox could not be set up, 126/127 when CMD cannot be executed / is not in
the view. As root, the datadir is handed to the role's uid."""


def add_verbs(verbs: Any) -> None:
    """Add the ``sandbox`` and ``policy`` verbs to the CLI's subparsers ``verbs``."""
    sandbox = verbs.add_parser("sandbox", help="run a command under a role's sandbox")
    sandbox_verbs = sandbox.add_subparsers(dest="sandbox_verb", required=True,
                                           metavar="VERB")
    run = sandbox_verbs.add_parser(
        "run", help="run CMD under ROLE's policy (one execve allowed)",
        description=_RUN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="bitcoin-supervisor sandbox run --role ROLE [--datadir DIR] "
              "[--datadir-of ROLE=DIR] [--option NAME=VALUE] [--keep-fd N] "
              "-- CMD [ARGS...]")
    run.add_argument("--role", required=True, choices=POLICIES,
                     help="whose policy applies (policies/ROLE.toml)")
    run.add_argument("--datadir", metavar="DIR", help="the role's datadir (default: a "
                     "fresh temporary one, removed afterwards)")
    _resolution_args(run)
    run.add_argument("--keep-fd", action="append", type=int, default=[], metavar="N",
                     help="an inherited descriptor CMD keeps (e.g. the IPC socket when "
                          "used as a component's argv wrapper: --keep-fd {fd})")
    run.add_argument("--verbose", "-v", action="store_true",
                     help="log the sandbox steps and their timings")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")

    policy = verbs.add_parser("policy", help="show, check and test sandbox policies")
    policy_verbs = policy.add_subparsers(dest="policy_verb", required=True, metavar="VERB")
    show = policy_verbs.add_parser("show", help="the effective policy of ROLE")
    show.add_argument("role", choices=POLICIES)
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--datadir", metavar="DIR",
                      help="the role's datadir (default: shown as <datadir:ROLE>)")
    _resolution_args(show)
    check = policy_verbs.add_parser("check", help="validate a policy (or syscalls.toml)")
    check.add_argument("file", type=Path)
    test = policy_verbs.add_parser("test", help="run the probe matrix on this machine")
    test.add_argument("role", nargs="?", choices=ROLES, help="only this role")
    test.add_argument("--json", action="store_true", help="machine-readable output")
    test.add_argument("--parallel", type=int, default=4, metavar="N",
                      help="probes at a time (default: 4)")


def _resolution_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datadir-of", action="append", default=[], metavar="ROLE=DIR",
                        help="another component's datadir, components named by role as in "
                             "the bundled config: for {datadir:NAME} entries, and node's "
                             "for {datadir:provider:chain}")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a component setting, for {option:NAME} ports")
