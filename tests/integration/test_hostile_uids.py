"""Two supervisor instances on one host never share a uid, and a component keeps its uid
across restarts of itself and of its instance."""

from __future__ import annotations

from pathlib import Path

import psutil

from .conftest import System, start_system, stop_system


def _uids(system: System) -> dict[str, int]:
    """Each component's uid as the kernel has it (the program inside its pid namespace),
    checked against what status reports."""
    seen = {}
    for comp in system.status()["components"]:
        inner = psutil.Process(comp["pid"]).children()
        assert len(inner) == 1, comp
        seen[comp["name"]] = inner[0].uids().real
        assert seen[comp["name"]] == comp["sandbox"]["uid"], comp
    return seen


def test_two_instances_have_disjoint_uids_each_stable(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = start_system(tmp_path / "a")
    try:
        b = start_system(tmp_path / "b")
        try:
            uids_a, uids_b = _uids(a), _uids(b)
            assert len(set(uids_a.values())) == len(set(uids_b.values())) == 3
            assert not set(uids_a.values()) & set(uids_b.values())
            # The datadirs on the host belong to each instance's own uids.
            for name, uid in uids_a.items():
                assert (tmp_path / "a" / "data" / name).stat().st_uid == uid
            # A restarted component, then a restarted instance, keep their uids.
            wallet_pid = a.pids()["wallet"]
            a.cli("restart", "wallet")
            assert a.pids()["wallet"] != wallet_pid
            assert _uids(a) == uids_a
        finally:
            stop_system(b)
        stop_system(a)
        a = start_system(tmp_path / "a")
        assert _uids(a) == uids_a
    finally:
        stop_system(a)
