"""Session-wide set-up: every daemon and CLI the suite starts is kept away from the
machine's own (their runtime records go to a directory of the session's, and no user or
system config is found), and tests that need a real foreign binary say in the summary when
they did not run it."""

from __future__ import annotations

import os
import tempfile
from typing import Any

# Set at import, before any test starts a daemon: the daemons and CLIs inherit it.
_SESSION = tempfile.mkdtemp(prefix="bsup-session-")
os.environ["BITCOIN_SUPERVISOR_RUNTIME_DIR"] = os.path.join(_SESSION, "run")
os.environ["XDG_CONFIG_HOME"] = os.path.join(_SESSION, "config")
os.environ.pop("BITCOIN_SUPERVISOR_CONFIG", None)

NOT_RUN: list[str] = []
"""One line per real-peer check that could not run (no binary given)."""


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in NOT_RUN:
        terminalreporter.write_line(f"REAL PEER NOT RUN: {line}", yellow=True)
