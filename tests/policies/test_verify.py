"""The /proc check behind "enforced (verified)": it must fail on a process that is not
confined, and name what is missing."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bitcoin_supervisor.sandbox import load_policy, verify_confinement


def _wallet_policy(tmp_path: Path):  # type: ignore[no-untyped-def]
    return load_policy("wallet", name="wallet", datadirs={"wallet": tmp_path})


def test_an_unconfined_process_is_reported_with_every_missing_layer(tmp_path: Path) -> None:
    with subprocess.Popen(["sleep", "30"]) as child:
        try:
            seen = verify_confinement(child.pid, _wallet_policy(tmp_path))
        finally:
            child.kill()
    assert seen.state == "violated"
    text = "\n".join(seen.problems)
    for missing in ("Seccomp 0", "NoNewPrivs 0", "no pid namespace",
                    "shares the supervisor's network namespace"):
        assert missing in text, text
    assert seen.label.startswith("VIOLATED: ")


def test_without_a_policy_nothing_is_claimed(tmp_path: Path) -> None:
    with subprocess.Popen(["sleep", "30"]) as child:
        try:
            seen = verify_confinement(child.pid, None)
        finally:
            child.kill()
    assert (seen.state, seen.label) == ("none", "none")


def test_a_vanished_process_is_a_violation_not_a_crash(tmp_path: Path) -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    seen = verify_confinement(child.pid, _wallet_policy(tmp_path))
    assert seen.state == "violated"
    assert "cannot read /proc" in seen.problems[0]
