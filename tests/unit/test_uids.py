"""Outer uid ranges: disjoint between instances, stable per component, recorded safely."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from bitcoin_supervisor.interfaces import SupervisorError
from bitcoin_supervisor.sandbox import Policy, load_policy
from bitcoin_supervisor.supervisor._uids import (
    POOL_FIRST,
    RANGE_SIZE,
    UID_FILE,
    allocate_uids,
    assign_outer_uids,
)

ROLES = ("node", "wallet", "index")


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    return tmp_path / "registry" / "uid-ranges.json"


def test_two_instances_get_disjoint_ranges(tmp_path: Path, registry: Path) -> None:
    a = allocate_uids(tmp_path / "a", ROLES, registry=registry)
    b = allocate_uids(tmp_path / "b", ROLES, registry=registry)
    assert not set(a.values()) & set(b.values())
    assert len(set(a.values())) == len(set(b.values())) == 3  # one uid per component
    assert a == {"node": POOL_FIRST, "wallet": POOL_FIRST + 1, "index": POOL_FIRST + 2}
    assert min(b.values()) == POOL_FIRST + RANGE_SIZE


def test_a_component_keeps_its_uid(tmp_path: Path, registry: Path) -> None:
    first = allocate_uids(tmp_path / "a", ["node", "wallet"], registry=registry)
    again = allocate_uids(tmp_path / "a", ["wallet", "index", "node"], registry=registry)
    assert {k: again[k] for k in first} == first
    assert again["index"] not in first.values()
    # A component removed from the config keeps its slot: its files keep their owner.
    later = allocate_uids(tmp_path / "a", ["index"], registry=registry)
    assert later == again


def test_a_deleted_datadir_frees_its_range(tmp_path: Path, registry: Path) -> None:
    a = allocate_uids(tmp_path / "a", ["node"], registry=registry)
    shutil.rmtree(tmp_path / "a")
    assert allocate_uids(tmp_path / "b", ["node"], registry=registry) == a


def test_a_copied_datadir_gets_a_range_of_its_own(tmp_path: Path, registry: Path) -> None:
    a = allocate_uids(tmp_path / "a", ["node"], registry=registry)
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    copy = allocate_uids(tmp_path / "copy", ["node"], registry=registry)
    assert copy["node"] != a["node"]
    assert allocate_uids(tmp_path / "a", ["node"], registry=registry) == a


def test_a_lost_registry_is_rebuilt_from_the_datadirs(tmp_path: Path, registry: Path) -> None:
    a = allocate_uids(tmp_path / "a", ["node"], registry=registry)
    registry.unlink()
    assert allocate_uids(tmp_path / "a", ["node"], registry=registry) == a
    assert allocate_uids(tmp_path / "b", ["node"], registry=registry) != a


def test_a_symlinked_allocation_file_is_refused(tmp_path: Path, registry: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "elsewhere.json").write_text(json.dumps({"version": 1}))
    (tmp_path / "a" / UID_FILE).symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(SupervisorError, match=r"refusing .*uids.json: .*move it away"):
        allocate_uids(tmp_path / "a", ["node"], registry=registry)


def test_a_malformed_allocation_file_is_refused(tmp_path: Path, registry: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / UID_FILE).write_text("{")
    with pytest.raises(SupervisorError) as err:
        allocate_uids(tmp_path / "a", ["node"], registry=registry)
    assert str(err.value) == (f"{tmp_path / 'a' / UID_FILE}: malformed uid allocation file; "
                              "move it away")


def test_a_full_range_is_an_error(tmp_path: Path, registry: Path) -> None:
    names = [f"c{i}" for i in range(RANGE_SIZE)]
    allocate_uids(tmp_path / "a", names, registry=registry)
    with pytest.raises(SupervisorError, match=f"all {RANGE_SIZE} uids of this instance"):
        allocate_uids(tmp_path / "a", [*names, "one-more"], registry=registry)


@dataclass
class _Component:
    name: str
    policy: Policy | None


def test_sandboxed_components_get_the_allocation(tmp_path: Path) -> None:
    datadirs = {role: tmp_path / role for role in ROLES}
    node = _Component("node", load_policy("node", datadirs=datadirs))
    free = _Component("debug", None)
    assign_outer_uids(tmp_path / "data", [node, free], registry=tmp_path / "registry.json")
    assert free.policy is None and node.policy is not None
    if os.geteuid() == 0:
        assert node.policy.uid == node.policy.gid == POOL_FIRST
    else:  # unprivileged: user namespaces map the uids, the policy is left alone
        assert node.policy.uid == 64101
