"""Coverage-guided fuzzing of the config loader, the policy loader, the control decoder
and the IPC link (random bytes at one end of a socketpair) with atheris (``make fuzz``):
``python -m tests.fuzz TARGET [libFuzzer flags]``.

The corpus lives in ``build/fuzz-corpus/TARGET`` (git-ignored) and grows across runs; it
is seeded with the malformed cases (tests/malformed), the bundled config and policies.
A crash (any exception a target lets through) stops the run and leaves the input as
``crash-*`` in the current directory, as libFuzzer does.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["bitcoin_supervisor", "tests.fuzz"]):
    from bitcoin_supervisor import log
    from bitcoin_supervisor.sandbox import POLICY_DIR

    from ._targets import Workspace, config_target, control_target, link_target, policy_target

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("config", "policy", "control", "link")


def _seeds(target: str) -> list[bytes]:
    match target:
        case "config":
            files = [ROOT / "multiprocess.toml", *sorted(ROOT.glob("tests/malformed/config/*"))]
        case "policy":
            files = [*sorted(POLICY_DIR.glob("[!s]*.toml")),
                     *sorted(ROOT.glob("tests/malformed/policy/*"))]
        case "link":
            # A capnp frame header (one segment of 2 words) then zeros, to each side.
            frame = bytes([0, 0, 0, 0, 2, 0, 0, 0]) + bytes(16)
            return [b"\x00" + frame, b"\x01" + frame, b"\x00", b"\x01\xff\xff\xff\xff"]
        case _:
            return [b'{"verb": "status"}', b'{"verb": "stop", "name": "wallet"}',
                    b'{"ok": false, "error": "x", "code": 404}',
                    b'{"ok": true, "supervisor": {}, "components": []}']
    return [f.read_bytes() for f in files]


def main() -> None:
    """Run one target until libFuzzer's flags (e.g. -max_total_time=60) stop it."""
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz {{{'|'.join(TARGETS)}}} [libFuzzer flags]")
    target = sys.argv[1]
    corpus = ROOT / "build" / "fuzz-corpus" / target
    if not corpus.is_dir():
        corpus.mkdir(parents=True)
        for i, seed in enumerate(_seeds(target)):
            (corpus / f"seed-{i:03d}").write_bytes(seed)
    work = Workspace()
    # Millions of links come and go: their info events would drown libFuzzer's report.
    log.configure(json=True, level=logging.WARNING)

    def one(data: bytes) -> None:
        match target:
            case "config":
                config_target(work, data)
            case "policy":
                policy_target(work, data)
            case "link":
                link_target(data)
            case _:
                control_target(data)

    atheris.Setup([sys.argv[0], *sys.argv[2:], str(corpus)], one)
    try:
        atheris.Fuzz()
    finally:
        work.close()


if __name__ == "__main__":
    main()
