"""Run the ``bitcoin-supervisor`` CLI (the same ``main`` as the console script) and, when
it exits, write the names in its ``sys.modules`` to the file named by
``BITCOIN_SUPERVISOR_TEST_MODULES``: what a daemon imported over its whole run."""

from __future__ import annotations

import atexit
import os
import sys


def _write() -> None:
    with open(os.environ["BITCOIN_SUPERVISOR_TEST_MODULES"], "w", encoding="utf-8") as fh:
        fh.write("\n".join(sorted(sys.modules)) + "\n")


if __name__ == "__main__":
    atexit.register(_write)
    from bitcoin_supervisor.supervisor.cli import main

    sys.exit(main())
