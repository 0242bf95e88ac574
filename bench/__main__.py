"""``python -m bench``: run the benchmarks, print one table each, write the JSON file, the
same tables in Markdown and a plot (PNG, when matplotlib is installed)."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bitcoin_supervisor import log

from ._plot import matplotlib_missing, write_plot
from ._report import Result, default_json_path, format_markdown, format_table, write_json
from ._runner import BENCHMARKS, run_benchmarks


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m bench``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="few samples: every benchmark finishes in seconds (smoke runs)")
    parser.add_argument("--only", action="append", choices=list(BENCHMARKS), metavar="NAME",
                        help=f"run only NAME (repeatable); one of {', '.join(BENCHMARKS)}")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="where to write results (default bench/results/<timestamp>.json;"
                             " the Markdown tables and the PNG plot go beside it)")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmarks; return 0, or 1 if any failed (the others still ran)."""
    args = build_parser().parse_args(argv)
    # The ipc layer and the broker log every link at info: keep the tables readable.
    log.configure(json=False, stream=sys.stderr, level=logging.WARNING)
    names = args.only or list(BENCHMARKS)
    path = args.json or default_json_path(Path(__file__).resolve().parent)
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    started = time.monotonic()

    def show(result: Result) -> None:
        print(format_table(result) + "\n", flush=True)

    def fail(name: str, error: str) -> None:
        print(f"== {name}: FAILED: {error}\n", file=sys.stderr, flush=True)

    mode = "quick" if args.quick else "full"
    print(f"running {', '.join(names)} ({mode})\n", flush=True)
    outcome = run_benchmarks(names, quick=args.quick, on_result=show, on_failure=fail)
    write_json(path, outcome.results, quick=args.quick, started_at=started_at,
               duration_s=time.monotonic() - started, failures=outcome.failures)
    print(f"results written to {path}")
    markdown = path.with_suffix(".md")
    markdown.write_text(format_markdown(outcome.results))
    print(f"tables written to {markdown}")
    if not args.no_plot and outcome.results:
        missing = matplotlib_missing()
        if missing:
            print(missing)
        else:
            plot = write_plot(json.loads(path.read_text()), path.with_suffix(".png"))
            print(f"plot written to {plot}")
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main())
