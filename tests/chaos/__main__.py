"""``make chaos``: the long chaos run (default 1,000 kills), with its figures printed."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ._chaos import COMPONENTS, chaos_run, check, setup_system, teardown


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos")
    parser.add_argument("--kills", type=int, default=1000, help="total kills (default 1000)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    each, extra = divmod(args.kills, len(COMPONENTS))
    kills = {name: each + (i < extra) for i, name in enumerate(COMPONENTS)}
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        system, port = setup_system(Path(tmp))
        try:
            report = chaos_run(system, port, kills, seed=args.seed,
                               progress=lambda line: print(line, flush=True))
            print(report.summary(), flush=True)
            check(system, port, report)
            print("chaos: every check passed")
        finally:
            teardown(system)


if __name__ == "__main__":
    main()
