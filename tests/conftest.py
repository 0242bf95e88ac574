"""Keeps every daemon and CLI the suite starts away from the machine's own: their runtime
records go to a directory of the session's, and no user or system config is found."""

from __future__ import annotations

import os
import tempfile

# Set at import, before any test starts a daemon: the daemons and CLIs inherit it.
_SESSION = tempfile.mkdtemp(prefix="bsup-session-")
os.environ["BITCOIN_SUPERVISOR_RUNTIME_DIR"] = os.path.join(_SESSION, "run")
os.environ["XDG_CONFIG_HOME"] = os.path.join(_SESSION, "config")
os.environ.pop("BITCOIN_SUPERVISOR_CONFIG", None)
