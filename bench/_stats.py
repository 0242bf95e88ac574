"""Summaries of timing samples: count, median and p90 (nearest rank), never means."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """The shape of one sample set; ``n`` says how much the other fields can be trusted."""

    n: int
    median: float
    p90: float
    minimum: float

    def to_row(self) -> dict[str, float | int]:
        """Return the fields every timing row of a result table carries."""
        return {"n": self.n, "median": self.median, "p90": self.p90, "min": self.minimum}


def percentile(samples: Sequence[float], q: float) -> float:
    """Return the nearest-rank ``q`` percentile (0 < q <= 100) of ``samples``.

    Nearest rank always returns a measured value, which keeps p90 honest for the small
    sample counts of ``--quick``. Raises ValueError for an empty sequence or a bad ``q``.
    """
    if not samples:
        raise ValueError("no samples")
    if not 0 < q <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {q}")
    ordered = sorted(samples)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def median(samples: Sequence[float]) -> float:
    """Return the median (mean of the two middle values for an even count).

    Raises ValueError for an empty sequence.
    """
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def summarize(samples: Sequence[float]) -> Summary:
    """Return count, median, p90 and minimum of ``samples``; ValueError if empty."""
    return Summary(n=len(samples), median=median(samples), p90=percentile(samples, 90),
                   minimum=min(samples))


def ratio(value: float, baseline: float) -> float:
    """Return ``value / baseline``; ValueError when the baseline is not positive."""
    if baseline <= 0:
        raise ValueError(f"baseline must be positive, not {baseline}")
    return value / baseline
