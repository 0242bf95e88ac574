"""Issue 9's CI chaos run: every component killed with SIGKILL 20 times under RPC load,
then every promise checked (``make chaos`` runs the long variant)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._chaos import COMPONENTS, chaos_run, check, setup_system, teardown

KILLS_PER_COMPONENT = 20


@pytest.mark.timeout(900)
def test_kill_9_under_load_loses_nothing_and_restarts_each_alone(tmp_path: Path) -> None:
    system, port = setup_system(tmp_path)
    try:
        report = chaos_run(system, port, dict.fromkeys(COMPONENTS, KILLS_PER_COMPONENT))
        print(report.summary())
        check(system, port, report)
    finally:
        teardown(system)
