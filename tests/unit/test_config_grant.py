"""Config keys that shape what a consumer's Chain is minted with: rpc_methods, [limits]."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bitcoin_supervisor.interfaces import ChainLimits, ConfigError
from bitcoin_supervisor.supervisor._capabilities import ROLE_RPC_METHODS
from bitcoin_supervisor.supervisor._config import load_config

REPO = Path(__file__).resolve().parents[2]


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "c.toml"
    path.write_text(textwrap.dedent(text))
    return load_config(path)


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    return str(caught.value)


def test_bundled_consumers_get_their_roles_names_and_default_limits() -> None:
    graph = load_config(REPO / "multiprocess.toml").graph
    assert graph.grant("wallet").rpc_methods == ROLE_RPC_METHODS["wallet"]
    assert graph.grant("index").rpc_methods == ("getindexinfo", "getrawtransaction")
    assert graph.grant("index").limits == ChainLimits()
    assert "node" not in graph.grants  # it consumes nothing


def test_names_and_limits_can_be_set_per_consumer(tmp_path: Path) -> None:
    config = _load(tmp_path, """
        [components.node]
        [components.index]
        rpc_methods = ["getindexinfo"]
        [components.index.limits]
        notify_deadline_ms = 250
        max_registrations = 2
        """)
    grant = config.graph.grant("index")  # type: ignore[attr-defined]
    assert grant.consumer == "index" and grant.rpc_methods == ("getindexinfo",)
    assert grant.limits == ChainLimits(notify_deadline_ms=250, max_registrations=2)


@pytest.mark.parametrize(("body", "expected"), [
    ('rpc_methods = ["GetBalance"]', "c.toml:3:16: RPC name 'GetBalance'"),
    ('rpc_methods = ["a", "a"]', "lists RPC name 'a' twice"),
    ("[components.index.limits]\nmax_calls = 3", "unknown limit 'max_calls'"),
    ("[components.index.limits]\nmax_rpc_names = 0", "must be >= 1, not 0"),
    ("[components.index.limits]\nmax_rpc_names = 5000000000", "above 4294967295"),
    ("[components.index.limits]\nmax_rpc_names = 1", "2 RPC names in [components.index]"),
])
def test_bad_grants_are_refused_with_their_location(tmp_path: Path, body: str,
                                                    expected: str) -> None:
    assert expected in _error(tmp_path, f"[components.node]\n[components.index]\n{body}\n")


def test_two_consumers_of_one_node_cannot_share_a_name(tmp_path: Path) -> None:
    message = _error(tmp_path, """
        [components.node]
        [components.index]
        [components.spy]
        role = "index"
        datadir = "spy"
        """)
    assert "RPC name 'getindexinfo' of [components.spy] is already granted to " \
           "[components.index] at node" in message
