"""Run a command (the test suite) so that other users can reach this checkout.

The suite runs daemons, probes and sandboxed programs as an unprivileged user (nobody)
from this checkout's venv. A checkout below a directory other users cannot traverse (root's
0700 home: ``/root/project``) is out of their reach, although nothing in it is secret. As
root, this runs the command in a private mount namespace where that directory is covered by
a fresh tmpfs (mode 0755) holding only the checkout, bind-mounted at its own path: nobody
can reach the checkout, and nothing else of the directory is visible. The host's own
permissions are never changed. Anywhere else (or not root) it just runs the command.

    python tests/open_checkout.py COMMAND [ARGS...]
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_INSIDE = "BITCOIN_SUPERVISOR_TEST_OPENED"


def blocked_ancestor(path: Path) -> Path | None:
    """The outermost ancestor of ``path`` that other users cannot traverse, or None."""
    for parent in reversed(path.parents):
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return parent
    return None


def _open(blocked: Path) -> None:
    """Inside the private mount namespace: tmpfs over ``blocked``, the checkout on it."""
    pinned = os.open(REPO, os.O_PATH | os.O_DIRECTORY)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=16m", "tmpfs",
                    str(blocked)], check=True)
    REPO.mkdir(parents=True, exist_ok=True)
    # --no-canonicalize: mount(8) would resolve the fd link to its path string, which now
    # names the empty directory on the tmpfs; the kernel resolves it to the pinned one.
    subprocess.run(["mount", "--no-canonicalize", "--bind", f"/proc/self/fd/{pinned}",
                    str(REPO)], check=True,
                   pass_fds=(pinned,))
    os.close(pinned)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    blocked = blocked_ancestor(REPO)
    if os.geteuid() != 0 or blocked is None:
        os.execvp(argv[0], argv)
    if os.environ.get(_INSIDE) != "1":
        os.environ[_INSIDE] = "1"
        os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", "--",
                              sys.executable, __file__, *argv])
    _open(blocked)
    print(f"open_checkout: {blocked} is not traversable by other users; the suite runs "
          f"in a mount namespace where only {REPO} is shown there", file=sys.stderr)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
