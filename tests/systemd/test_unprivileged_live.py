"""The unprivileged unit under a real systemd: a dynamic user, no capabilities, user
namespaces for the sandbox and the delegated cgroup for the components."""

from __future__ import annotations

import os
from pathlib import Path

from ._boot import cgroup_pids
from .conftest import COMPONENTS, VENV, Service


def _status(host_pid: int, key: str) -> list[str]:
    for line in Path(f"/proc/{host_pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return line.split()[1:]
    raise AssertionError(f"no {key} line for pid {host_pid}")


def _booted_pids(cgroup: Path) -> dict[int, int]:
    """Pid as the booted systemd (and so the daemon) sees it -> uid, for every process
    in ``cgroup`` and below (cgroup.procs read on the host lists host pids)."""
    return {int(_status(p, "NSpid")[1]): int(_status(p, "Uid")[0])
            for p in cgroup_pids(cgroup)}


def test_runs_the_bundled_config_with_every_component_confined(
        unprivileged: Service) -> None:
    unprivileged.start()
    props = unprivileged.show("ActiveState", "SubState", "MainPID")
    assert (props["ActiveState"], props["SubState"]) == ("active", "running"), props
    status = unprivileged.status()
    components = {c["name"]: c for c in status["components"]}
    assert set(components) == COMPONENTS, status
    for component in components.values():
        assert (component["state"], component["substate"]) == ("active", "running"), component
        assert component["confinement"] == "enforced", component
    # The operator's view (the CLI's text status) says it in as many words.
    text = unprivileged.systemd.run(str(VENV / "bin" / "bitcoin-supervisor"), "status",
                                    "--datadir", unprivileged.state_dir).stdout
    assert text.count("Confined: enforced (verified)") == len(COMPONENTS), text
    print(text)
    # The node's JSON-RPC answers on loopback (IPAddressAllow=localhost, nothing else).
    height = unprivileged.systemd.run(
        str(VENV / "bin" / "bitcoin-supervisor"), "rpc", "--config",
        unprivileged.systemd.inner(unprivileged.config), "--datadir", unprivileged.state_dir,
        "getblockcount").stdout
    assert height.strip().isdigit(), height

    # Not root: the daemon runs as the unit's dynamic user, and so does everything in its
    # cgroup (the components are that uid, mapped to root only inside their namespaces).
    main = int(props["MainPID"])
    pids = _booted_pids(unprivileged.cgroup())
    uid = pids[main]
    assert uid != 0 and set(pids.values()) == {uid}, pids
    user = unprivileged.systemd.run("id", "-un", str(uid), check=False).stdout.strip()
    print(f"daemon uid {uid} ({user or 'dynamic'}), {len(pids)} processes in the unit")

    # Each component lives in a cgroup of its own below the delegated unit cgroup, with
    # its policy's limits where that cgroup offers the controllers (a pure cgroup v2
    # host); where it does not (this harness on a hybrid host: memory and pids are v1,
    # root's), the daemon says so instead of failing or pretending.
    offered = (unprivileged.cgroup() / "cgroup.controllers").read_text().split()
    skipped = {e["component"]: e for e in unprivileged.log_events()
               if e["event"] == "cgroup.limits_skipped"}
    if {"memory", "pids"} <= set(offered):
        assert not skipped, skipped
    else:
        assert set(skipped) == COMPONENTS, unprivileged.journal()
        assert all(e["level"] == "warning" and "delegated cgroup" in e["reason"]
                   for e in skipped.values()), skipped
    print(f"delegated cgroup offers {offered}; limits skipped for {sorted(skipped)}")
    for name, component in components.items():
        leaves = [Path(top) for top, _dirs, files in os.walk(unprivileged.cgroup())
                  if Path(top).name.startswith(f"{name}@")]
        # A component with a warm standby (the bundled wallet and index) has a second
        # cgroup of its own for it, once the standby was started.
        standby = (component.get("standby") or {}).get("pid")
        assert len(leaves) == (2 if standby else 1) or (
            component.get("standby") and len(leaves) in (1, 2)), (name, leaves)
        holding = [leaf for leaf in leaves if component["pid"] in _booted_pids(leaf)]
        assert len(holding) == 1, (name, component, leaves)
        if standby:
            assert [leaf for leaf in leaves if standby in _booted_pids(leaf)] != holding
