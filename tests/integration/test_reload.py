"""Reload (SIGHUP, `bitcoin-supervisor reload`): the config's difference is applied, the
rest keeps its processes, and a bad config changes nothing."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from .conftest import System


def _append(config: Path, text: str) -> None:
    config.write_text(config.read_text() + text)


def test_reload_adds_removes_and_restarts_only_what_changed(system: System) -> None:
    before = system.pids()
    text = system.config.read_text()
    # wallet removed, index changed (a setting of its own), index2 added, node untouched.
    start, end = text.index("[components.wallet]"), text.index("[components.index]")
    text = text[:start] + text[end:]
    text = text.replace("[components.index]\n", "[components.index]\nstop_timeout_s = 7\n")
    # A second index of the same node serves no RPC names: each name has one owner.
    system.config.write_text(text + '\n[components.index2]\nrole = "index"\n'
                             'consumes = ["chain"]\nrpc_methods = []\n')
    reply = json.loads(system.cli("reload", "--json").stdout)
    assert reply == {"added": ["index2"], "removed": ["wallet"], "changed": ["index"],
                     "unchanged": ["node"]}
    after = system.pids()
    assert set(after) == {"node", "index", "index2"}
    assert after["node"] == before["node"]
    assert after["index"] not in (None, before["index"])
    assert system.component("index2")["state"] == "active"
    assert system.component("index2")["confinement"] == "enforced"
    # The new and the restarted index were handed the running node's chain.
    for name in ("index", "index2"):
        assert system.component(name)["sync"] is not None


def test_a_provider_changed_by_reload_keeps_its_consumers_running(system: System) -> None:
    before = system.pids()
    system.config.write_text(system.config.read_text().replace(
        "[components.node]\n", "[components.node]\nstop_timeout_s = 9\n"))
    reply = json.loads(system.cli("reload", "--json").stdout)
    assert reply["changed"] == ["node"] and reply["unchanged"] == ["wallet", "index"]
    after = system.pids()
    assert after["node"] != before["node"]
    assert (after["wallet"], after["index"]) == (before["wallet"], before["index"])
    # The wallet was handed the new node's chain without a restart of its own.
    system.rpc("createwallet", "r")
    system.rpc("generatetoaddress", "101", system.rpc("getnewaddress", wallet="r"))
    assert system.rpc("getbalance", wallet="r") == "50.00000000"


def test_a_bad_config_on_reload_keeps_the_old_one_and_says_why(system: System) -> None:
    before = system.pids()
    good = system.config.read_text()
    _append(system.config, "\n[components.index3]\nrole = \"indx\"\n")
    refused = system.cli("reload", check=False)
    assert refused.returncode == 2
    assert f"{system.config}:" in refused.stderr and "indx" in refused.stderr
    assert "previous config keeps running" in refused.stderr
    failed = system.log.wait_for(lambda e: e.get("event") == "config.reload_failed")
    assert str(system.config) in failed["error"]
    assert system.pids() == before
    # SIGHUP does the same as the verb; a valid file applies.
    system.config.write_text(good + '\n[components.index3]\nrole = "index"\n'
                             'rpc_methods = []\n')
    system.log.mark()
    system.process.send_signal(signal.SIGHUP)
    done = system.log.wait_for(lambda e: e.get("event") == "config.reloaded")
    assert done["added"] == ["index3"] and done["changed"] == []
    system.wait_running("index3")
    assert {k: v for k, v in system.pids().items() if k != "index3"} == before


def test_a_reload_naming_a_missing_or_unrunnable_program_keeps_the_old_config(
        system: System, tmp_path: Path) -> None:
    before = system.pids()
    good = system.config.read_text()
    not_executable = tmp_path / "not-executable"
    not_executable.write_text("#!/bin/sh\n")
    not_executable.chmod(0o644)
    for program in (tmp_path / "no-such-program", not_executable):
        system.config.write_text(good + f'\n[components.extra]\nargv = ["{program}", "{{fd}}"]'
                                 '\nsandbox = "wallet"\n')
        refused = system.cli("reload", check=False)
        assert refused.returncode == 2, refused.stderr
        assert f"cannot execute {program}" in refused.stderr, refused.stderr
        assert "previous config keeps running" in refused.stderr
        assert system.pids() == before
        assert [c["name"] for c in system.status()["components"]] == ["node", "wallet", "index"]
