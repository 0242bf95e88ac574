"""`make fresh-check`'s script (tests/fresh_check.sh) refuses bad arguments and non-root
users before it touches anything; the check itself is too long for `make test`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "fresh_check.sh"


def _run(*args: str, uid: int | None = None, cache: Path | None = None
         ) -> subprocess.CompletedProcess[str]:
    prefix = [] if uid is None else ["setpriv", f"--reuid={uid}", f"--regid={uid}",
                                     "--clear-groups", "--"]
    extra = ["--cache", str(cache)] if cache is not None else []
    return subprocess.run([*prefix, "bash", str(SCRIPT), *args, *extra],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("args", "said"), [
    (["--runs", "0"], "--runs needs a positive number"),
    (["--runs", "three"], "--runs needs a positive number"),
    (["--runs"], "--runs needs a positive number"),
    (["--bogus"], "unknown argument '--bogus'"),
])
def test_bad_arguments_are_one_line_and_exit_2(args: list[str], said: str, tmp_path: Path
                                               ) -> None:
    result = _run(*args, cache=tmp_path / "cache")
    assert result.returncode == 2
    assert result.stderr.strip() == f"fresh_check: {said}" + (
        " (see --help)" if "unknown" in said else "")
    assert not (tmp_path / "cache").exists(), "nothing is created before the checks"


def test_help_says_what_it_tests() -> None:
    result = _run("--help")
    assert result.returncode == 0
    assert "usage: tests/fresh_check.sh" in result.stdout and "HEAD" in result.stdout


def test_it_refuses_to_run_without_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        result = _run(cache=tmp_path / "cache")
    else:  # as root, as an unprivileged user (nobody)
        tmp_path.chmod(0o777)
        result = _run(uid=65534, cache=tmp_path / "cache")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "fresh_check: must run as root (debootstrap, mount namespaces, pivot_root)")
    assert not (tmp_path / "cache").exists()
