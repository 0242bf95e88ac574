"""The CLI finds its daemon from any directory: the config search order, the records
running daemons leave in the runtime directory, and errors that say what was tried."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_client import fake_daemon, loaded_forbidden, run_cli

from bitcoin_supervisor.supervisor._locate import (
    config_candidates,
    find_config,
    publish_record,
    retract_record,
    running_daemons,
)


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    """An empty working directory, a runtime directory, a config home and a datadir."""
    made = {name: tmp_path / name for name in ("cwd", "run", "xdg", "data")}
    for path in made.values():
        path.mkdir(mode=0o700)
    return made


def _env(dirs: dict[str, Path]) -> dict[str, str]:
    return {"BITCOIN_SUPERVISOR_RUNTIME_DIR": str(dirs["run"]),
            "XDG_CONFIG_HOME": str(dirs["xdg"])}


def _record(dirs: dict[str, Path], pid: int | None = None) -> Path:
    path = publish_record(pid or os.getpid(), dirs["data"] / "supervisor.sock",
                          dirs["data"] / "multiprocess.toml", dirs["data"],
                          directory=dirs["run"])
    assert path is not None
    return path


def test_status_from_any_directory_finds_the_recorded_daemon(dirs: dict[str, Path]) -> None:
    with fake_daemon(dirs["data"]) as seen:
        record = _record(dirs)
        code, out, err, modules = run_cli("status", "--json", cwd=dirs["cwd"], env=_env(dirs))
    assert (code, err) == (0, ""), err
    assert seen == [{"verb": "status", "name": None}]
    assert "components" in json.loads(out)
    assert loaded_forbidden(modules) == []
    assert record.stat().st_mode & 0o777 == 0o600


def test_nothing_found_says_what_was_tried(dirs: dict[str, Path]) -> None:
    code, _, err, _ = run_cli("status", cwd=dirs["cwd"], env=_env(dirs))
    assert code == 3
    assert err == (
        f"bitcoin-supervisor: no running daemon found: none recorded in"
        f" {dirs['run']}; no multiprocess.toml; "
        f"no {dirs['xdg']}/bitcoin-supervisor/multiprocess.toml; "
        "no /etc/bitcoin-supervisor/multiprocess.toml; start one with `bitcoin-supervisor "
        "start`, or pass --config FILE (or set BITCOIN_SUPERVISOR_CONFIG)")


def test_stale_and_untrusted_records_are_ignored(dirs: dict[str, Path]) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    with fake_daemon(dirs["data"]):
        stale = _record(dirs, pid=int(dead.stdout))
        assert running_daemons(dirs["run"]) == ([], [])  # its pid is gone
        live = _record(dirs)
        assert stale == live  # one record per control socket, replaced atomically
        live.chmod(0o644)
        records, notes = running_daemons(dirs["run"])
        assert records == [] and notes == [f"{live} ignored (mode 644 is too open)"]
        code, _, err, _ = run_cli("status", cwd=dirs["cwd"], env=_env(dirs))
        assert code == 3 and f"{live} ignored (mode 644 is too open)" in err
        live.chmod(0o600)
        dirs["run"].chmod(0o770)
        assert running_daemons(dirs["run"]) == (
            [], [f"{dirs['run']} ignored (mode 770 is too open)"])
        dirs["run"].chmod(0o700)
        link = dirs["run"] / "elsewhere.json"
        link.symlink_to(live)
        records, notes = running_daemons(dirs["run"])
        assert len(records) == 1 and len(notes) == 1 and str(link) in notes[0]


def test_record_is_retracted_only_by_its_daemon(dirs: dict[str, Path]) -> None:
    record = _record(dirs)
    retract_record(record, os.getpid() + 1)
    assert record.exists()
    retract_record(record, os.getpid())
    assert not record.exists()


def test_config_search_order(dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    user = dirs["xdg"] / "bitcoin-supervisor" / "multiprocess.toml"
    monkeypatch.chdir(dirs["cwd"])
    monkeypatch.setenv("XDG_CONFIG_HOME", str(dirs["xdg"]))
    monkeypatch.delenv("BITCOIN_SUPERVISOR_CONFIG", raising=False)
    assert config_candidates() == [Path("multiprocess.toml"), user,
                                   Path("/etc/bitcoin-supervisor/multiprocess.toml")]
    user.parent.mkdir()
    user.write_text("")
    assert find_config(None) == user
    (dirs["cwd"] / "multiprocess.toml").write_text("")
    assert find_config(None) == Path("multiprocess.toml")
    monkeypatch.setenv("BITCOIN_SUPERVISOR_CONFIG", "/from/env.toml")
    assert find_config(None) == Path("/from/env.toml")
    assert find_config("given.toml") == Path("given.toml")


def test_user_config_is_used_from_any_directory(dirs: dict[str, Path]) -> None:
    user = dirs["xdg"] / "bitcoin-supervisor" / "multiprocess.toml"
    user.parent.mkdir()
    user.write_text(f'[supervisor]\ndatadir = "{dirs["data"]}"\n[components.node]\n')
    with fake_daemon(dirs["data"]) as seen:
        code, _, err, _ = run_cli("status", cwd=dirs["cwd"], env=_env(dirs))
    assert (code, err, len(seen)) == (0, "", 1)


def test_config_from_the_environment_wins_over_a_recorded_daemon(
        dirs: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    config = tmp_path / "env.toml"
    config.write_text(f'[supervisor]\ndatadir = "{other}"\n[components.node]\n')
    _record(dirs)  # names dirs["data"], where nothing answers
    with fake_daemon(other) as seen:
        code, _, err, _ = run_cli("status", cwd=dirs["cwd"],
                                  env={**_env(dirs), "BITCOIN_SUPERVISOR_CONFIG": str(config)})
    assert (code, err, len(seen)) == (0, "", 1)


def test_help_documents_the_search_order() -> None:
    cli = Path(sys.executable).parent / "bitcoin-supervisor"
    out = subprocess.run([str(cli), "--help"], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    assert "BITCOIN_SUPERVISOR_CONFIG" in out and "/etc/bitcoin-supervisor/" in out
    assert "/run/bitcoin-supervisor/" in out and "XDG_RUNTIME_DIR" in out
