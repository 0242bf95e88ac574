"""The shipped unit as systemd's own analyzers judge it (no running systemd needed)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .conftest import REPO, UNIT_NAME, unit_text

# Measured with systemd 252 on Debian 12: the shipped hardening scores 4.0 ("OK"; 3.7 before
# CAP_SYS_PTRACE, which the daemon needs to verify its components from /proc);
# Bitcoin Core's contrib/init/bitcoind.service scores about 8.2 ("EXPOSED") here.
# systemd-analyze's --threshold is the score times ten.
MAX_EXPOSURE = 4.0


def _installed_unit(tmp_path: Path) -> Path:
    path = tmp_path / UNIT_NAME
    path.write_text(unit_text(str(REPO / "multiprocess.toml")))
    return path


def test_verify_reports_nothing(tmp_path: Path) -> None:
    unit = _installed_unit(tmp_path)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60)
    # Warnings (unknown keys such as RestartSteps= on 252, bad paths) exit 0 too.
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_security_exposure_stays_at_measured_level(tmp_path: Path) -> None:
    unit = _installed_unit(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes",
         f"--threshold={round(MAX_EXPOSURE * 10)}", str(unit)],
        capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    score = float(found[1])
    print(f"systemd-analyze security exposure of {UNIT_NAME}: {score}")
    assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}:\n{result.stdout}"
    assert result.returncode == 0, result.stdout + result.stderr
