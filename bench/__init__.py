"""Benchmarks for bitcoin-supervisor: each prints a table and lands in one JSON file.

Run ``python -m bench [--quick] [--only NAME] [--json PATH]`` from the repository root.
Every number is compared with a baseline measured in the same run (a ratio), because
absolute timings on small shared VMs drift; nothing here gates CI.
"""

from ._children import DAEMON_VARIANTS, VARIANTS, SpawnVariant
from ._options import Options
from ._report import Result, format_table, machine_info, write_json
from ._runner import BENCHMARKS, Benchmark, Outcome, run_benchmarks
from ._stats import Summary, percentile, summarize

__all__ = [
    "BENCHMARKS",
    "DAEMON_VARIANTS",
    "VARIANTS",
    "Benchmark",
    "Options",
    "Outcome",
    "Result",
    "SpawnVariant",
    "Summary",
    "format_table",
    "machine_info",
    "percentile",
    "run_benchmarks",
    "summarize",
    "write_json",
]
