"""``python -m bench --quick`` runs every benchmark and writes a complete JSON file.

Only the shape is checked: timings are never asserted (benchmarks never gate CI).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import BENCHMARKS, DAEMON_VARIANTS, VARIANTS

REPO = Path(__file__).resolve().parents[2]


# A quick run is about a minute on a quiet machine; on a 2-core machine shared with a
# C++ build and other test suites (load 17) it took 153 s: the deadline only has
# to catch a hang.
@pytest.mark.timeout(900)
def test_quick_bench_writes_every_benchmark_with_positive_numbers(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=840)
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert document["failures"] == {}
    assert document["machine"]["nproc"] >= 1
    assert set(document["benchmarks"]) == set(BENCHMARKS)
    markdown = out.with_suffix(".md").read_text()  # the README's tables
    assert all(f"**{name}**" in markdown for name in BENCHMARKS)
    for name, bench in document["benchmarks"].items():
        assert bench["rows"], name
        for row in bench["rows"]:
            numbers = {k: v for k, v in row.items()
                       if isinstance(v, int | float) and not isinstance(v, bool)}
            assert {"n", "median", "p90"} <= set(numbers), (name, row)
            # Zero is a measurement (an idle daemon's wakeups); negative never is.
            assert row["n"] > 0 and all(v >= 0 for v in numbers.values()), (name, row)
        # Each table is printed for the user, under the benchmark's name.
        assert f"== {name}:" in result.stdout
    spawn_rows = document["benchmarks"]["spawn_to_init"]["rows"]
    assert {v.name for v in VARIANTS} <= {row["variant"] for row in spawn_rows}
    # Only a confined launch reports the trampoline's sandbox.applied steps.
    sandboxed = {v.name for v in VARIANTS if v.sandboxed}
    for row in spawn_rows:
        assert (row["sandbox_ms"] is not None) == (row["variant"] in sandboxed), row
    restarted = {row["variant"] for row in document["benchmarks"]["restart_latency"]["rows"]}
    assert restarted == {v.name for v in DAEMON_VARIANTS}
