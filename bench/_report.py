"""Benchmark results: the plain-text tables printed to the terminal and the JSON file."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Cell = str | int | float | None

# Columns whose values are in the result's unit; the header names the unit.
_TIMED = ("median", "p90", "min")


@dataclass
class Result:
    """What one benchmark measured.

    ``rows`` are flat dicts keyed by ``columns`` (first column: ``label``); ``unit`` is the
    unit of the timed columns (median, p90, min); ``ratio`` columns are relative to the
    same-run baseline named in ``baseline``. ``params`` records how it was measured.
    """

    name: str
    title: str
    unit: str
    columns: tuple[str, ...]
    baseline: str
    rows: list[dict[str, Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the result as the JSON object stored under its name."""
        return {"title": self.title, "unit": self.unit, "baseline": self.baseline,
                "columns": list(self.columns), "rows": self.rows, "notes": self.notes,
                "params": self.params}


def _header(column: str, unit: str) -> str:
    return f"{column} {unit}" if column in _TIMED else column


def _cell(value: Cell, column: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or isinstance(value, int | str):
        return str(value)
    if column.startswith("ratio"):
        return f"{value:.2f}x"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def format_table(result: Result) -> str:
    """Return ``result`` as an aligned plain-text table with its title and notes."""
    headers = [_header(c, result.unit) for c in result.columns]
    body = [[_cell(row.get(c), c) for c in result.columns] for row in result.rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h)
              for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        # Labels read best left-aligned, numbers right-aligned.
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [f"== {result.name}: {result.title}", line(headers),
           line(["-" * w for w in widths])]
    out += [line(r) for r in body]
    out.append(f"   baseline (same run): {result.baseline}")
    out += [f"   note: {n}" for n in result.notes]
    return "\n".join(out)


def _md(value: Cell, column: str) -> str:
    return _cell(value, column).replace("|", "\\|")


def format_markdown(results: Sequence[Result]) -> str:
    """Return every result as a Markdown section (title, table, baseline, notes), for the
    README's Benchmarks section."""
    out: list[str] = []
    for result in results:
        headers = [_header(c, result.unit) for c in result.columns]
        out += [f"**{result.name}**: {result.title}", "",
                "| " + " | ".join(headers) + " |",
                "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
        out += ["| " + " | ".join(_md(row.get(c), c) for c in result.columns) + " |"
                for row in result.rows]
        out += ["", f"baseline (same run): {result.baseline}"]
        out += [f"- {note}" for note in result.notes]
        out.append("")
    return "\n".join(out)


def machine_info() -> dict[str, Any]:
    """Return what the numbers depend on: CPUs, interpreter, kernel, load at start."""
    load = os.getloadavg()
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "hostname": platform.node(),
        "loadavg_1m": round(load[0], 2),
    }


def default_json_path(root: Path) -> Path:
    """Return ``<root>/results/<UTC timestamp>.json`` (the directory is git-ignored)."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return root / "results" / f"{stamp}.json"


def write_json(path: Path, results: Sequence[Result], *, quick: bool,
               started_at: str, duration_s: float,
               failures: dict[str, str] | None = None) -> None:
    """Write every result plus machine info to ``path`` (parents created); raises OSError."""
    document = {
        "schema": 1,
        "started_at": started_at,
        "duration_s": round(duration_s, 3),
        "quick": quick,
        "machine": machine_info(),
        "benchmarks": {r.name: r.to_json() for r in results},
        "failures": dict(failures or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
