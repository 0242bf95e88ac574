"""Property-based fuzzing of the parsers a hostile file or client reaches: the config
loader, the policy loader and the control protocol decoder. Any input ends in a result
or in that parser's own one-line error (tests/fuzz/_targets.py says exactly what is
checked). Example counts are bounded so the whole file runs in seconds; ``make fuzz``
runs the same targets coverage-guided for longer."""

from __future__ import annotations

import json
import resource
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bitcoin_supervisor.sandbox import POLICY_DIR

from ._targets import (
    Workspace,
    config_target,
    control_target,
    link_target,
    parses,
    policy_target,
    toml_document,
)

FAST = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

_CONFIG_KEYS = ["supervisor", "components", "datadir", "debug", "control_group", "node",
                "wallet", "index", "role", "depends_on", "provides", "consumes", "restart",
                "policy", "backoff_initial_s", "backoff_max_s", "backoff_multiplier",
                "start_limit_burst", "start_limit_interval_s", "stop_timeout_s", "sandbox",
                "argv", "ipc", "socket", "schema", "health", "check", "interval_s",
                "timeout_s", "start_timeout_s", "rpcport", "rpcbind", "disk_budget",
                "inode_budget"]
_POLICY_KEYS = ["version", "role", "namespaces", "unshare", "hostname", "filesystem",
                "read_only", "read_write", "tmpfs", "devices", "proc", "network", "mode",
                "capabilities", "keep", "rlimits", "nofile", "fsize", "landlock", "enabled",
                "optional", "scope", "tcp_bind", "tcp_connect", "seccomp", "default_action",
                "groups", "allow", "errno", "rule", "syscall", "action", "args", "arg", "eq",
                "mask", "value", "justification", "user", "uid", "gid", "fds", "cgroup",
                "memory_max", "pids_max", "hardening", "mdwe"]
_WORDS = ["node", "wallet", "index", "chain", "chain@node", "{fd}", "{datadir}",
          "{datadir:node}", "{option:rpcport}", "/usr", "/", "..", "-/lib", "@default",
          "@python-service", "read", "openat", "ENOSYS", "kill_process", "errno:EPERM",
          "none", "host", "bind", "spawn", "echo", "always", "512M", "max", "infinity",
          "mount", "user", "pid", "uts", "/bin/true", "", "\x00", "é"]


def _values(keys: list[str]) -> st.SearchStrategy[object]:
    scalars = st.one_of(
        st.sampled_from(_WORDS), st.text(max_size=12), st.booleans(),
        st.integers(min_value=-2**63, max_value=2**64), st.floats(allow_nan=True),
        st.sampled_from([0, 1, -1, 0.0, 65535, 65536, 2**31, 2**32 + 1]))
    keyed = st.one_of(st.sampled_from(keys), st.text(max_size=8))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(keyed, inner, max_size=6)),
        max_leaves=25)


def _documents(keys: list[str]) -> st.SearchStrategy[str]:
    keyed = st.sampled_from(keys)
    return st.dictionaries(keyed, _values(keys), max_size=6).map(toml_document)


@pytest.fixture(scope="module")
def work() -> Iterator[Workspace]:
    workspace = Workspace()
    yield workspace
    workspace.close()


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@FAST
@given(data=st.binary(max_size=2048))
def test_config_loader_on_random_bytes(work: Workspace, data: bytes) -> None:
    config_target(work, data)


@FAST
@given(text=_documents(_CONFIG_KEYS))
def test_config_loader_on_random_documents(work: Workspace, text: str) -> None:
    assume(parses(text))
    config_target(work, text.encode())


@FAST
@given(text=_documents(["components"]), body=_documents(_CONFIG_KEYS))
def test_config_loader_on_random_component_tables(work: Workspace, text: str,
                                                  body: str) -> None:
    # A real component table around random keys gets past the top-level checks.
    document = f"[components.node]\n{body}\n[components.wallet]\n"
    assume(parses(document))
    config_target(work, document.encode())


_SHIPPED = (POLICY_DIR / "wallet.toml").read_text()


@FAST
@given(data=st.binary(max_size=2048))
def test_policy_loader_on_random_bytes(work: Workspace, data: bytes) -> None:
    policy_target(work, data)


@FAST
@given(text=_documents(_POLICY_KEYS))
def test_policy_loader_on_random_documents(work: Workspace, text: str) -> None:
    assume(parses(text))
    policy_target(work, text.encode())


@FAST
@given(cut=st.integers(min_value=0, max_value=len(_SHIPPED)),
       junk=st.sampled_from(["", "x", "]", "[", "\"", "= 1", "\n[seccomp]\n", "\x00",
                             "\nallow = [\"nosuchcall\"]\n", "\nunshare = 5\n"]))
def test_policy_loader_on_mutated_shipped_policy(work: Workspace, cut: int, junk: str) -> None:
    # Near-valid files reach the deepest checks (templates, seccomp rules, namespaces).
    policy_target(work, (_SHIPPED[:cut] + junk + _SHIPPED[cut:]).encode())


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10),
              st.sampled_from(["status", "start", "stop", "restart", "shutdown", "verb",
                               "name", "wallet", "ok", "code", "error", "components"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(
        st.sampled_from(["verb", "name", "ok", "code", "error", "component", "components",
                         "supervisor", "state", "pid", "x"]), inner, max_size=5)),
    max_leaves=30)


@FAST
@given(data=st.binary(max_size=1024))
def test_control_decoder_on_random_bytes(data: bytes) -> None:
    control_target(data)


@FAST
@given(value=_JSON)
def test_control_decoder_on_random_json(value: object) -> None:
    control_target(json.dumps(value).encode())


def test_control_decoder_on_deep_nesting_and_big_lines() -> None:
    before = _rss_mib()
    for data in (b"[" * 100_000, b'{"verb":' * 50_000, b'"' + b"a" * (1 << 20) + b'"',
                 json.dumps({"verb": "stop", "name": "w" * (1 << 20)}).encode()):
        control_target(data)
    assert _rss_mib() - before < 200


@settings(FAST, max_examples=40)
@given(data=st.binary(max_size=2048))
def test_ipc_link_target_on_random_bytes(data: bytes) -> None:
    # The atheris target of `make fuzz link`, kept working here; tests/ipc/test_fuzz_link.py
    # covers the same link against real role processes.
    link_target(data)
