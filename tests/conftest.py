"""Session-wide test reporting: tests that need a real foreign binary say in the summary
when they did not run it."""

from __future__ import annotations

from typing import Any

NOT_RUN: list[str] = []
"""One line per real-peer check that could not run (no binary given)."""


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in NOT_RUN:
        terminalreporter.write_line(f"REAL PEER NOT RUN: {line}", yellow=True)
