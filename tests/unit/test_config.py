"""Config loading: defaults, dependency order, and one exact located message per mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bitcoin_supervisor.interfaces import ConfigError
from bitcoin_supervisor.supervisor._capabilities import Binding
from bitcoin_supervisor.supervisor._config import RestartConfig, load_config
from bitcoin_supervisor.supervisor._tomlpos import TomlPositions

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "multiprocess.toml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text_ = str(info.value)
    prefix = f"{path}:"
    assert text_.startswith(prefix), text_
    return text_[len(prefix):]


# -- defaults and order --------------------------------------------------------------------

def test_bundled_config_loads_with_documented_defaults() -> None:
    config = load_config(REPO / "multiprocess.toml")
    assert config.datadir == REPO / ".bitcoin-supervisor"
    assert config.socket_path == REPO / ".bitcoin-supervisor" / "supervisor.sock"
    assert [c.name for c in config.components] == ["node", "wallet", "index"]
    node = config.component("node")
    assert node.role == "node"
    assert node.argv == ("bitcoin-supervisor-node", "-ipcfd", "{fd}")
    assert node.datadir == config.datadir / "node"
    assert dict(node.options) == {"rpcport": 18443, "rpcbind": "127.0.0.1", "ipcbind": "none"}
    assert node.restart == RestartConfig("on-failure")
    assert config.component("wallet").depends_on == ("node",)
    assert config.component("index").depends_on == ("node",)
    # A hung component is found with the bundled config too (issue 9: a SIGSTOPped wallet
    # went unnoticed for 84 s).
    for name in ("node", "wallet", "index"):
        health = config.component(name).health
        assert (health.check, health.interval_s, health.timeout_s) == ("echo", 15.0, 10.0)
    with pytest.raises(KeyError):
        config.component("gui")


def test_role_defaults_make_the_capability_graph(tmp_path: Path) -> None:
    config = load_config(REPO / "multiprocess.toml")
    node, wallet, index = (config.component(n) for n in ("node", "wallet", "index"))
    assert (node.provides, dict(node.consumes)) == (("chain",), {})
    assert (wallet.provides, dict(wallet.consumes)) == ((), {"chain": "node"})
    assert (index.provides, dict(index.consumes)) == ((), {"chain": "node"})
    graph = config.graph
    assert graph.bindings == (Binding("wallet", "chain", "node"),
                              Binding("index", "chain", "node"))
    assert graph.consumers("node", "chain") == graph.bindings
    # depends_on follows from consumes, whatever the provider is called.
    config = load_config(write(tmp_path, """
        [components.wallet]
        [components.main]
        role = "node"
        """))
    assert config.component("wallet").depends_on == ("main",)
    assert [c.name for c in config.components] == ["main", "wallet"]


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [components.wallet]
        [components.node]
        """)
    config = load_config(path)
    assert config.datadir == tmp_path / ".bitcoin-supervisor"
    assert config.debug == ()
    wallet = config.component("wallet")
    assert wallet.role == "wallet"  # a name that is a role needs no role key
    assert wallet.depends_on == ("node",)
    assert dict(wallet.consumes) == {"chain": "node"}
    assert wallet.argv == ("bitcoin-supervisor-wallet", "-ipcfd", "{fd}")
    assert wallet.datadir == tmp_path / ".bitcoin-supervisor" / "wallet"
    assert wallet.stop_timeout_s == 10.0
    assert wallet.restart == RestartConfig(
        policy="on-failure", backoff_initial_s=0.1, backoff_max_s=30.0,
        backoff_multiplier=2.0, start_limit_burst=5, start_limit_interval_s=60.0)
    assert dict(wallet.options) == {}
    assert [c.name for c in config.components] == ["node", "wallet"]


def test_dependency_order_keeps_file_order_for_ties(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [components.c]
        role = "index"
        consumes = ["chain@b"]
        [components.a]
        role = "wallet"
        consumes = []
        [components.b]
        role = "node"
        rpcport = 18500
        [components.node]
        [components.d]
        role = "wallet"
        depends_on = ["c"]
        consumes = ["chain@node"]
        """)
    config = load_config(path)
    assert [c.name for c in config.components] == ["a", "b", "c", "node", "d"]
    # Explicit dependencies first, then the providers.
    assert config.component("d").depends_on == ("c", "node")
    assert config.component("a").depends_on == ()


def test_two_nodes_with_two_wallets_each_bound_to_its_own(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
        [components.node-a]
        role = "node"
        rpcport = 18501
        [components.node-b]
        role = "node"
        rpcport = 18502
        [components.wallet-a]
        role = "wallet"
        consumes = ["chain@node-a"]
        [components.wallet-b]
        role = "wallet"
        consumes = ["chain@node-b"]
        [components.index]
        consumes = ["chain@node-b"]
        """))
    assert dict(config.component("wallet-a").consumes) == {"chain": "node-a"}
    assert dict(config.component("wallet-b").consumes) == {"chain": "node-b"}
    assert config.component("wallet-a").depends_on == ("node-a",)
    assert config.component("wallet-b").depends_on == ("node-b",)
    graph = config.graph
    assert graph.consumers("node-a", "chain") == (Binding("wallet-a", "chain", "node-a"),)
    assert [b.consumer for b in graph.consumers("node-b", "chain")] == ["wallet-b", "index"]


def test_a_program_of_another_kind_provides_and_consumes_nothing(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
        [components.calc]
        argv = ["/opt/mp/bin/mpcalculator", "{fd}"]
        sandbox = "wallet"
        """))
    calc = config.component("calc")
    assert (calc.role, calc.provides, dict(calc.consumes)) == (None, (), {})
    assert (calc.depends_on, dict(calc.options), calc.sandbox) == ((), {}, "wallet")
    assert config.graph.bindings == ()


def test_explicit_values_and_restart_table(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [supervisor]
        datadir = "state"
        debug = ["ipc"]

        [components.node]
        argv = ["/opt/bitcoin/bin/bitcoin-node", "-ipcfd={fd}"]
        datadir = "/var/lib/node"
        rpcport = 18444
        stop_timeout_s = 3
        debug = ["rpc", "ipc"]

        [components.node.restart]
        policy = "always"
        backoff_initial_s = 1
        backoff_max_s = 8
        backoff_multiplier = 3
        start_limit_burst = 2
        start_limit_interval_s = 5

        [components.wallet]
        restart = { policy = "no" }
        """)
    config = load_config(path)
    node = config.component("node")
    assert config.datadir == tmp_path / "state"
    assert node.argv == ("/opt/bitcoin/bin/bitcoin-node", "-ipcfd={fd}")
    assert node.datadir == Path("/var/lib/node")
    assert node.stop_timeout_s == 3.0
    assert node.debug == ("ipc", "rpc")
    assert node.restart == RestartConfig("always", 1.0, 8.0, 3.0, 2, 5.0)
    assert config.component("wallet").restart.policy == "no"
    assert config.component("wallet").debug == ("ipc",)


def test_datadir_override_replaces_supervisor_datadir(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [supervisor]
        datadir = "ignored"
        [components.node]
        """)
    config = load_config(path, datadir_override=str(tmp_path / "elsewhere"))
    assert config.datadir == tmp_path / "elsewhere"
    assert config.component("node").datadir == tmp_path / "elsewhere" / "node"


# -- errors: exact messages ----------------------------------------------------------------

def test_missing_file_has_no_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.line is None
    assert str(info.value) == (f"{missing}: config file not found (hint: pass --config PATH "
                               "or copy the bundled multiprocess.toml)")


def test_toml_syntax_error_becomes_line_and_col(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.node]
        rpcport = 1
        rpcport = 2
        """) == "3:12: invalid TOML: Cannot overwrite a value"
    assert error_of(tmp_path, """
        [components.node]
        argv = ["x",
        """) == "3:1: invalid TOML: Invalid value at end of file"


def test_unknown_key_with_close_match(tmp_path: Path) -> None:
    message = error_of(tmp_path, """
        [supervisor]
        datadir = "d"

        [components.node]

        [components.wallet]
        restrat = "no"
        """)
    assert message == ("7:1: unknown key 'restrat' in [components.wallet] "
                       "(hint: did you mean 'restart'?)")


def test_unknown_key_without_close_match_lists_known_keys(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [supervisor]
        colour = "blue"
        [components.node]
        """) == ("2:1: unknown key 'colour' in [supervisor] "
                 "(hint: known keys: 'datadir', 'debug', 'control_group', 'fork_server', "
                 "'standby')")
    assert error_of(tmp_path, """
        [daemon]
        """) == ("1:1: unknown key 'daemon' in the top level "
                 "(hint: known keys: 'supervisor', 'components')")


def test_unknown_key_in_restart_table_and_inline_table(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.node.restart]
        policy = "always"
        backof_max_s = 3
        """) == ("3:1: unknown key 'backof_max_s' in [components.node.restart] "
                 "(hint: did you mean 'backoff_max_s'?)")
    assert error_of(tmp_path, """
        [components.node]
        restart = { policy = "always", burst = 3 }
        """) == ("2:32: unknown key 'burst' in [components.node.restart] "
                 "(hint: known keys: 'policy', 'backoff_initial_s', 'backoff_max_s', "
                 "'backoff_multiplier', 'start_limit_burst', 'start_limit_interval_s')")


def test_dotted_key_is_located(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components]
        node.role = "node"
        node.rpcprot = 1
        """) == ("3:1: unknown key 'rpcprot' in [components.node] "
                 "(hint: did you mean 'rpcport'?)")


def test_wrong_types_point_at_the_value(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.node]
        rpcport = "18443"
        """) == "2:11: 'rpcport' in [components.node] must be an integer, not string"
    assert error_of(tmp_path, """
        [components.node]
        stop_timeout_s = true
        """) == "2:18: 'stop_timeout_s' in [components.node] must be a number, not boolean"
    assert error_of(tmp_path, """
        [supervisor]
        debug = "ipc"
        [components.node]
        """) == "2:9: 'debug' in [supervisor] must be an array, not string"
    assert error_of(tmp_path, """
        [components.node]
        argv = ["bitcoin-node", 3]
        """) == ("2:25: 'argv' in [components.node] must be an array of strings, "
                 "found integer")
    assert error_of(tmp_path, """
        components = 3
        """) == "1:14: 'components' in the top level must be a table, not integer"
    assert error_of(tmp_path, """
        [components.node]
        restart = 1
        """) == ("2:11: 'restart' in [components.node] must be a policy string or a "
                 "table, not integer")


def test_bad_enum_values_list_the_allowed_ones(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.node]
        restart = "on-failur"
        """) == ("2:11: unknown restart policy 'on-failur' in [components.node] "
                 "(hint: allowed: 'no', 'on-failure', 'always'; did you mean 'on-failure'?)")
    assert error_of(tmp_path, """
        [components.node.restart]
        policy = "sometimes"
        """) == ("2:10: unknown restart policy 'sometimes' in [components.node.restart] "
                 "(hint: allowed: 'no', 'on-failure', 'always')")


def test_unknown_or_missing_role(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.main]
        role = "nodes"
        """) == ("2:8: unknown role 'nodes' in [components.main] "
                 "(hint: allowed: 'node', 'wallet', 'index'; did you mean 'node'?)")
    assert error_of(tmp_path, """
        [components.main]
        rpcport = 1
        """) == ("1:1: missing key 'role' in [components.main] "
                 "(hint: set role to one of 'node', 'wallet', 'index', or give a program "
                 "of another kind both 'argv' and 'sandbox')")
    assert error_of(tmp_path, """
        [components.calc]
        argv = ["mpcalculator", "{fd}"]
        """).startswith("1:1: missing key 'role' in [components.calc]")


def test_role_setting_on_the_wrong_role(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.wallet]
        rpcport = 18443
        """) == ("2:1: 'rpcport' in [components.wallet] is not a setting of role 'wallet' "
                 "(hint: settings of role 'wallet': none)")
    assert error_of(tmp_path, """
        [components.calc]
        argv = ["mpcalculator", "{fd}"]
        sandbox = "none"
        rpcbind = "127.0.0.1"
        """) == ("4:1: 'rpcbind' in [components.calc] is not a setting of a component "
                 "without a role (hint: settings of a component without a role: "
                 "'rpcport', 'port')")


def test_unknown_dependency(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.node]
        [components.wallet]
        depends_on = ["nod"]
        """) == ("3:15: [components.wallet] depends on unknown component 'nod' "
                 "(hint: did you mean 'node'?)")
    assert error_of(tmp_path, """
        [components.node]
        [components.wallet]
        depends_on = ["miner"]
        """) == ("3:15: [components.wallet] depends on unknown component 'miner' "
                 "(hint: defined components: 'node', 'wallet')")


def test_dependency_cycle(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.node]
        [components.wallet]
        depends_on = ["node", "index"]
        [components.index]
        depends_on = ["wallet"]
        """) == ("3:23: dependency cycle: wallet -> index -> wallet "
                 "(hint: remove one of these depends_on entries)")
    assert error_of(tmp_path, """
        [components.node]
        depends_on = ["node"]
        """) == ("2:15: dependency cycle: node -> node "
                 "(hint: remove one of these depends_on entries)")


def test_dependency_cycle_through_a_capability(tmp_path: Path) -> None:
    # node -> wallet is written; wallet -> node follows from the wallet's role default.
    assert error_of(tmp_path, """
        [components.node]
        depends_on = ["wallet"]
        [components.wallet]
        """) == ("2:15: dependency cycle: node -> wallet -> node "
                 "(hint: remove one of these depends_on or consumes entries)")
    # Starting from the consumer, the cycle points at its consumes entry.
    assert error_of(tmp_path, """
        [components.wallet]
        consumes = ["chain@node"]
        [components.node]
        depends_on = ["wallet"]
        """) == ("2:13: dependency cycle: wallet -> node -> wallet "
                 "(hint: remove one of these depends_on or consumes entries)")


# -- errors: the capability graph ----------------------------------------------------------

def test_unknown_capability(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.node]
        [components.wallet]
        consumes = ["chian"]
        """) == ("3:13: unknown capability 'chian' in [components.wallet] "
                 "(hint: did you mean 'chain'?)")
    assert error_of(tmp_path, """
        [components.node]
        provides = ["chain", "mempool"]
        """) == ("2:22: unknown capability 'mempool' in [components.node] "
                 "(hint: known capabilities: 'chain')")


def test_capability_the_role_cannot_serve_or_receive(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.node]
        [components.wallet]
        provides = ["chain"]
        """) == ("3:13: [components.wallet] cannot provide 'chain': role 'wallet' has no "
                 "way to (hint: roles that provide 'chain': 'node')")
    assert error_of(tmp_path, """
        [components.node]
        [components.calc]
        argv = ["mpcalculator", "{fd}"]
        sandbox = "none"
        consumes = ["chain"]
        """) == ("5:13: [components.calc] cannot consume 'chain': a component without a "
                 "role has no way to (hint: roles that consume 'chain': 'wallet', 'index')")


def test_unknown_provider(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.node]
        [components.wallet]
        consumes = ["chain@nod"]
        """) == ("3:13: [components.wallet] consumes 'chain' from unknown component 'nod' "
                 "(hint: did you mean 'node'?)")
    assert error_of(tmp_path, """
        [components.node]
        [components.wallet]
        consumes = ["chain@miner"]
        """) == ("3:13: [components.wallet] consumes 'chain' from unknown component "
                 "'miner' (hint: components that provide 'chain': 'node')")
    assert error_of(tmp_path, """
        [components.node]
        [components.index]
        [components.wallet]
        consumes = ["chain@index"]
        """) == ("4:13: [components.wallet] consumes 'chain' from [components.index], "
                 "which does not provide it (hint: components that provide 'chain': 'node')")
    assert error_of(tmp_path, """
        [components.node]
        [components.wallet]
        consumes = ["chain@"]
        """) == ("3:13: 'chain@' in [components.wallet] names no provider "
                 '(hint: write "chain" (its only provider) or "chain@COMPONENT")')


def test_ambiguous_provider(tmp_path: Path) -> None:
    # The role default is ambiguous with two nodes: the error points at the component.
    assert error_of(tmp_path, """
        [components.node]
        [components.node2]
        role = "node"
        rpcport = 18444
        [components.wallet]
        """) == ("5:1: ambiguous provider of 'chain' for [components.wallet]: 'node', "
                 "'node2' provide it (hint: name one, e.g. consumes = [\"chain@node\"])")
    assert error_of(tmp_path, """
        [components.node]
        [components.node2]
        role = "node"
        rpcport = 18444
        [components.wallet]
        consumes = ["chain@node2"]
        [components.index]
        consumes = ["chain"]
        """) == ("8:13: ambiguous provider of 'chain' for [components.index]: 'node', "
                 "'node2' provide it (hint: name one, e.g. consumes = [\"chain@node\"])")


def test_missing_provider(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.wallet]
        """) == ("1:1: no component provides 'chain', which [components.wallet] consumes "
                 "(hint: add a component of role 'node', or set consumes = [] in "
                 "[components.wallet])")
    config = load_config(write(tmp_path, """
        [components.wallet]
        consumes = []
        """))
    assert dict(config.component("wallet").consumes) == {}


def test_capability_listed_twice(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.node]
        [components.wallet]
        consumes = ["chain", "chain@node"]
        """) == ("3:22: [components.wallet] consumes 'chain' twice (hint: a component "
                 "receives each capability from one provider)")
    assert error_of(tmp_path, """
        [components.node]
        provides = ["chain", "chain"]
        """) == "2:22: [components.node] provides 'chain' twice"


def test_duplicate_dependency(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.node]
        [components.wallet]
        depends_on = ["node", "node"]
        """) == "3:23: [components.wallet] lists dependency 'node' twice"


def test_duplicate_rpcport(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.node]
        rpcport = 18443
        [components.node2]
        role = "node"
        rpcport = 18443
        """) == ("5:11: rpcport 18443 in [components.node2] is already used by "
                 "[components.node] (hint: give each component its own rpcport)")


def test_duplicate_datadir(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.node]
        [components.wallet]
        datadir = "node"
        """) == ("3:1: datadir of [components.wallet] is already used by [components.node] "
                 "(hint: give each component its own datadir)")


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_port_out_of_range(tmp_path: Path, port: int) -> None:
    assert error_of(tmp_path, f"""
        [components.node]
        rpcport = {port}
        """) == (f"2:11: rpcport {port} in [components.node] is out of range "
                 "(hint: use a port between 1 and 65535)")


def test_argv_needs_the_fd(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.node]
        argv = ["bitcoin-node"]
        """) == ("2:8: 'argv' in [components.node] must contain '{fd}' (the inherited IPC "
                 'socket\'s number) (hint: e.g. argv = ["mpcalculator", "{fd}"], or '
                 "ipc = \"bind\" with 'socket' for a program that listens itself)")


def test_empty_argv(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.node]
        argv = []
        """) == "2:8: 'argv' in [components.node] must start with an executable"


def test_numeric_bounds(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.node.restart]
        backoff_initial_s = 2
        backoff_max_s = 1
        """) == "3:17: 'backoff_max_s' in [components.node.restart] must be >= 2.0, not 1.0"
    assert error_of(tmp_path, """
        [components.node]
        restart = {start_limit_burst = 0}
        """) == ("2:32: 'start_limit_burst' in [components.node.restart] must be >= 1, "
                 "not 0")


def test_no_components_and_bad_names(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [supervisor]
        """) == ("1:1: no components defined (hint: add a table such as [components.node] "
                 'with role = "node")')
    assert error_of(tmp_path, """
        [components."Bad Name"]
        role = "node"
        """) == ("1:1: invalid component name 'Bad Name' (hint: use 1-32 characters: "
                 "lowercase letters, digits, '-', '_', starting with a letter)")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_bytes(b"[components.node]\n# \xff\n")
    with pytest.raises(ConfigError, match="config file is not UTF-8"):
        load_config(path)


# -- the locator on its own ----------------------------------------------------------------

def test_locator_handles_quotes_strings_and_arrays() -> None:
    text = textwrap.dedent('''\
        # comment [not.a.table]
        title = """
        key = "inside a string"
        """
        [ "components" . 'my node' ]
        argv = [
          "a",  # comment
          "{fd}",
        ]
        restart = { policy = "no", backoff = { x = 1 } }
        ''')
    pos = TomlPositions(text)
    assert pos.find(("key",)) is None
    assert pos.find(("components", "my node")) == (5, 1)
    assert pos.find(("components", "my node", "argv", "1")) == (8, 3)
    assert pos.find(("components", "my node", "argv"), value=True) == (6, 8)
    assert pos.find(("components", "my node", "restart", "backoff", "x")) == (10, 40)
    # An absent key falls back to the nearest present ancestor.
    assert pos.find(("components", "my node", "missing")) == (5, 1)


def test_nested_datadirs_are_refused(tmp_path: Path) -> None:
    node_dir = (tmp_path / "data" / "node").resolve()
    assert error_of(tmp_path, """
        [supervisor]
        datadir = "data"
        [components.node]
        [components.wallet]
        datadir = "node/wallets"
        """) == (f"5:1: datadir of [components.wallet] ({node_dir / 'wallets'}) overlaps the "
                 f"one of [components.node] ({node_dir}) "
                 "(hint: give each component its own, separate datadir)")


def test_datadir_holding_the_supervisor_or_system_is_refused(tmp_path: Path) -> None:
    data = (tmp_path / "data").resolve()
    assert error_of(tmp_path, """
        [supervisor]
        datadir = "data"
        [components.node]
        datadir = "."
        """) == (f"4:1: datadir {data} of [components.node] contains the supervisor's "
                 "datadir (hint: use a subdirectory of [supervisor].datadir (the default))")
    assert error_of(tmp_path, """
        [components.node]
        datadir = "/etc"
        """) == ("2:1: datadir /etc of [components.node] is a system directory "
                 "(hint: use a directory of its own)")


# -- fork servers --------------------------------------------------------------------------

def test_fork_server_is_on_by_default_global_and_per_component(tmp_path: Path) -> None:
    default = load_config(write(tmp_path, """
        [components.node]
        [components.wallet]
        """))
    assert all(c.fork_server for c in default.components)
    mixed = load_config(write(tmp_path, """
        [supervisor]
        fork_server = false
        [components.node]
        [components.wallet]
        fork_server = true
        """))
    assert {c.name: c.fork_server for c in mixed.components} == {"node": False,
                                                                 "wallet": True}


def test_fork_server_must_be_a_boolean(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.node]
        fork_server = "yes"
        """) == "2:15: 'fork_server' in [components.node] must be a boolean, not string"


# -- warm standby --------------------------------------------------------------------------

def test_standby_is_off_by_default_and_the_bundled_config_keeps_one_for_consumers(
        tmp_path: Path) -> None:
    default = load_config(write(tmp_path, """
        [components.node]
        [components.wallet]
        """))
    assert not any(c.standby for c in default.components)
    bundled = load_config(REPO / "multiprocess.toml")
    assert {c.name: c.standby for c in bundled.components} == {
        "node": False, "wallet": True, "index": True}


def test_the_supervisor_default_applies_only_where_a_standby_can_work(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
        [supervisor]
        standby = true
        [components.node]
        [components.wallet]
        [components.index]
        standby = false
        """))
    assert {c.name: c.standby for c in config.components} == {
        "node": False, "wallet": True, "index": False}


def test_a_standby_for_the_node_is_refused_where_it_is_asked_for(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [components.node]
        standby = true
        """) == ("2:11: [components.node] runs role 'node', which cannot wait as a standby "
                 "(hint: drop 'standby' (only 'wallet', 'index' can))")
    assert error_of(tmp_path, """
        [supervisor]
        standby = "yes"
        [components.node]
        """) == "2:11: 'standby' in [supervisor] must be a boolean, not string"
