"""What every benchmark function receives: how thorough to be and where to put files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Options:
    """``quick``: a few samples, seconds per benchmark (smoke runs); ``workdir``: a private
    temporary directory the benchmark may fill (datadirs, configs)."""

    quick: bool
    workdir: Path

    def pick(self, quick: int, full: int) -> int:
        """Return the ``quick`` or ``full`` count for this run."""
        return quick if self.quick else full
