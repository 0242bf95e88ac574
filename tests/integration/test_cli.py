"""The CLI's behaviour without a healthy daemon: bad config, no daemon, help."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .conftest import CLI


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_bad_config_exits_2_with_location_and_spawns_nothing(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[supervisor]\ndatadir = "data"\n\n[components.wallet]\nrestrat = "no"\n')
    result = run("start", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"bitcoin-supervisor: {config}:5:1: unknown key 'restrat' in [components.wallet] "
        "(hint: did you mean 'restart'?)"]
    assert not (tmp_path / "data").exists()


def test_no_daemon_exits_3(tmp_path: Path) -> None:
    for verb in (["status"], ["restart", "wallet"], ["shutdown"]):
        result = run(*verb, "--datadir", str(tmp_path))
        assert result.returncode == 3, (verb, result.stderr)
        assert str(tmp_path / "supervisor.sock") in result.stderr


def test_help_everywhere() -> None:
    for verb in ("start", "status", "stop", "restart", "shutdown", "rpc"):
        result = run(verb, "--help")
        assert result.returncode == 0 and "--config" in result.stdout


def test_rpc_without_daemon_exits_3(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[supervisor]\ndatadir = "{tmp_path / "d"}"\n[components.node]\n')
    result = run("rpc", "--config", str(config), "getblockcount")
    assert result.returncode == 3
    assert "not running" in result.stderr
