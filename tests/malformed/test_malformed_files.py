"""Malformed config and policy files (tests/malformed/{config,policy}/*.toml): each is
refused by the real CLI with exit code 2 and exactly the one line its ``# expect:``
header gives, and nothing is started: no process, no socket, no datadir.

``start --config F`` runs each config case, ``policy check F`` each policy case. In the
expected lines ``{dir}`` stands for the case's directory and ``{python}`` for the
interpreter the CLI runs under (both differ per machine). A config case ``X.toml`` with a
directory ``X.schema`` beside it gets that directory as ``schema/`` (a user's Cap'n Proto
schema, which the config names).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

HERE = Path(__file__).resolve().parent
CLI = Path(sys.executable).parent / "bitcoin-supervisor"
CASES = sorted(HERE.glob("config/*.toml")) + sorted(HERE.glob("policy/*.toml"))
_HEADER = b"# expect: "


@dataclass(frozen=True)
class Outcome:
    """What one run of the CLI on one case left behind."""

    where: Path  # the case's own directory (the CLI's cwd)
    returncode: int
    stderr: str
    stdout: str
    left: list[str]  # what is in the case's directory afterwards
    strays: list[str]  # processes that still refer to the case's directory


def _expected(case: Path, where: Path) -> str:
    first = case.read_bytes().split(b"\n", 1)[0]
    assert first.startswith(_HEADER), f"{case.name}: first line must be '# expect: ...'"
    shebang = CLI.read_text().split("\n", 1)[0].removeprefix("#!").strip()
    return (first[len(_HEADER):].decode().replace("{dir}", str(where))
            .replace("{python}", shebang))


def _schema_dir(case: Path) -> Path:
    return case.with_suffix(".schema")


def _run(case: Path, top: Path) -> tuple[Path, Outcome]:
    where = top / f"{case.parent.name}-{case.stem}"
    where.mkdir()
    shutil.copy(case, where)
    if _schema_dir(case).is_dir():
        shutil.copytree(_schema_dir(case), where / "schema")
    verb = ["start", "--config"] if case.parent.name == "config" else ["policy", "check"]
    env = {**os.environ, "BITCOIN_SUPERVISOR_RUNTIME_DIR": str(where / "run")}
    try:
        done = subprocess.run([str(CLI), *verb, case.name], cwd=where, env=env,
                              capture_output=True, text=True, timeout=30)
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:  # a daemon came up: the case was accepted
        code, out, err = -1, str(exc.stdout), str(exc.stderr)
    strays = []
    inside = (str(where), f"{where}/")
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        words = [*(proc.info["cmdline"] or []), proc.info["cwd"] or ""]
        if any(w == inside[0] or inside[1] in w for w in words):
            strays.append(f"{proc.info['pid']}: {' '.join(words)}")
            proc.kill()
    return case, Outcome(where, code, err, out, sorted(os.listdir(where)), strays)


@pytest.fixture(scope="module")
def outcomes() -> Iterator[dict[Path, Outcome]]:
    """Every case run once, four at a time (each run is a short CLI process)."""
    top = Path(tempfile.mkdtemp(prefix="malformed-"))
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            yield dict(pool.map(lambda case: _run(case, top), CASES))
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_the_suite_covers_at_least_thirty_files_of_each_kind_together() -> None:
    assert len(CASES) >= 30
    assert {c.parent.name for c in CASES} == {"config", "policy"}
    messages = [c.read_bytes().split(b"\n", 1)[0] for c in CASES]
    assert len(set(messages)) == len(messages), "each case has its own message"


# The first case also runs the module fixture: every case, ~1.5 s each on a quiet
# machine, far longer at a load of 15+ on two cores (seen here): a generous deadline.
@pytest.mark.timeout(900)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.parent.name}/{c.stem}")
def test_malformed_file_is_refused_with_one_located_line(
        case: Path, outcomes: dict[Path, Outcome]) -> None:
    outcome = outcomes[case]
    line = _expected(case, outcome.where)
    assert re.match(rf"(bitcoin-supervisor: )?{re.escape(case.name)}:\d+:\d+: ", line), \
        f"{case.name}: the message must start with file:line:col"
    assert outcome.stderr.splitlines() == [line], outcome.stderr
    assert outcome.returncode == 2
    assert outcome.stdout == ""
    # Nothing started: no datadir, control socket or runtime record, no process.
    assert outcome.left == sorted([case.name] + (["schema"] if _schema_dir(case).is_dir()
                                                 else []))
    assert outcome.strays == []
