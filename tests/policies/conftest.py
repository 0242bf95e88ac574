"""Helpers for the policy probe tests: run probes in real, sandboxed child processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
NOBODY = 65534


@dataclass
class Outcome:
    """How a probe ended: its exit code (negative = killed by that signal) and output."""

    returncode: int
    result: object
    steps: dict[str, float]
    stderr: str


def _cmd(script: str, spec: dict[str, object]) -> list[str]:
    return [sys.executable, str(HERE / script), json.dumps(spec)]


def _outcome(proc: subprocess.Popen[str]) -> Outcome:
    # A hang, not a slow start: at load ~30 a probe's Python took longer than 30 s.
    out, err = proc.communicate(timeout=300)
    result: object = None
    steps: dict[str, float] = {}
    if proc.returncode == 0:
        data = json.loads(out.strip().splitlines()[-1])
        result, steps = data.get("result", data), data.get("steps", {})
    return Outcome(proc.returncode, result, steps, err)


def start(script: str, spec: dict[str, object], user: int | None = None
          ) -> subprocess.Popen[str]:
    """Start a probe (as ``user`` when given) without waiting for it."""
    return subprocess.Popen(_cmd(script, spec), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, user=user, group=user,
                            extra_groups=[] if user is not None else None)


def run(script: str, spec: dict[str, object], user: int | None = None) -> Outcome:
    """Run one probe to completion."""
    return _outcome(start(script, spec, user))


def run_many(script: str, specs: list[dict[str, object]], user: int | None = None
             ) -> list[Outcome]:
    """Run probes concurrently (the suite must stay fast on 2 cores)."""
    procs = [start(script, spec, user) for spec in specs]
    return [_outcome(p) for p in procs]


@dataclass
class Datadirs:
    """Three component datadirs side by side; the node's holds a block file."""

    base: Path
    owner: int | None

    def as_spec(self) -> dict[str, str]:
        return {role: str(self.base / role) for role in ("node", "wallet", "index")}


def _make(base: Path, owner: int | None) -> Datadirs:
    base.mkdir(parents=True)
    for role in ("node", "wallet", "index"):
        (base / role).mkdir()
    (base / "node" / "blocks").mkdir()
    (base / "node" / "blocks" / "blk00000.dat").write_bytes(b"node-secret-block")
    (base / "node" / "peers.dat").write_text("node-private")
    if owner is not None:
        for path in [base, *base.rglob("*")]:
            os.chown(path, owner, owner)
    return Datadirs(base, owner)


@pytest.fixture
def datadirs(tmp_path: Path) -> Datadirs:
    """Datadirs for probes run as root (under pytest's root-only tmp dir)."""
    return _make(tmp_path / "dd", None)


@pytest.fixture
def nobody_datadirs() -> Iterator[Datadirs]:
    """Datadirs an unprivileged uid can reach (pytest's tmp dir is mode 0700)."""
    base = Path(tempfile.mkdtemp(prefix="policy-probe-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        yield _make(base / "dd", NOBODY)
    finally:
        shutil.rmtree(base)
